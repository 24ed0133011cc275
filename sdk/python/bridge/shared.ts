/**
 * The bridge of this Node process. pythonia runs one Python per Node process, so the SDK shares one
 * bridge: `getBridge` opens it on first use, `callPython` calls through it.
 */
import { PythonBridgeError } from './errors.js'
import { openBridge } from './open.js'
import type { BridgeOptions, CallOptions, PythonBridge } from './types.js'

let active: PythonBridge | undefined
let starting: Promise<PythonBridge> | undefined

/**
 * Starts the Python bridge. pythonia allows one Python per Node process, so a second start while one is
 * open throws; use `getBridge()` to share it.
 */
export async function startBridge(options: BridgeOptions = {}): Promise<PythonBridge> {
  const open = active && !active.closed ? active : undefined
  if (starting || open) {
    throw new PythonBridgeError(
      `a Python bridge${open ? ` (${open.python}, pid ${open.pid})` : ''} is already open in this process; pythonia allows one, so close() it first or use getBridge()`,
    )
  }
  starting = openBridge(options)
  try {
    active = await starting
    return active
  } finally {
    starting = undefined
  }
}

/**
 * The open bridge, or a new one started with `options` (which only apply when it starts: one Python per
 * process). Concurrent callers share one start.
 */
export async function getBridge(options: BridgeOptions = {}): Promise<PythonBridge> {
  if (starting) return starting
  if (active && !active.closed) return active
  return startBridge(options)
}

/** Stops the shared bridge, if one is open. */
export async function closeBridge(): Promise<void> {
  await active?.close()
}

/** `getBridge(options).call(target, args, options)`: a Python function, JSON in and out. */
export async function callPython<T = unknown>(
  target: string,
  args: Record<string, unknown> = {},
  options: CallOptions & BridgeOptions = {},
): Promise<T> {
  const bridge = await getBridge(options)
  return bridge.call<T>(target, args, options)
}
