/**
 * The video tools' way into Python: functions of `ttt_video.video_probe`, called through the process's
 * in-process bridge (`callPython`, docs/bridge.md). Nothing in sdk/video spawns Python itself.
 */
import { accessSync, constants } from 'node:fs'
import {
  callPython,
  PythonBridgeError,
  PythonCallError,
  PythonCancelledError,
  PythonTimeoutError,
} from '../python/bridge/index.js'
import { resolveVenvDir, venvPython } from '../python/paths.js'
import { VideoCancelledError } from './errors.js'

const MODULE = 'ttt_video.video_probe'

export interface VideoPythonOptions {
  /** The managed environment; it applies when this call starts the bridge (one Python per process). */
  venvDir?: string
  signal?: AbortSignal
  timeoutMs?: number
}

/** Why Python could not answer: no environment, no bridge, or the function raised. */
export class VideoPythonUnavailable extends Error {
  constructor(
    message: string,
    /** The Python exception class when the function raised, e.g. `ModuleNotFoundError`. */
    readonly pythonType?: string,
  ) {
    super(message)
  }
}

function hasPython(venvDir: string): boolean {
  try {
    accessSync(venvPython(venvDir), constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * Calls `ttt_video.video_probe.<fn>(**args)`. Rejects with VideoCancelledError when `signal` fires, with
 * the PythonCallError the function raised, and with VideoPythonUnavailable when there is no Python to ask.
 */
export async function callVideoPython<T>(
  fn: string,
  args: Record<string, unknown>,
  what: string,
  options: VideoPythonOptions = {},
): Promise<T> {
  if (options.signal?.aborted) throw new VideoCancelledError(what, options.signal.reason)
  const venvDir = resolveVenvDir(options.venvDir)
  if (!hasPython(venvDir)) throw new VideoPythonUnavailable(`no Python environment at ${venvDir}`)
  try {
    return await callPython<T>(`${MODULE}.${fn}`, args, {
      venvDir,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    })
  } catch (e) {
    if (e instanceof PythonCancelledError) throw new VideoCancelledError(what, options.signal?.reason)
    if (e instanceof PythonBridgeError || e instanceof PythonTimeoutError)
      throw new VideoPythonUnavailable(`the Python bridge (${venvDir}) failed: ${e.message}`)
    if (e instanceof PythonCallError && e.pythonType === 'ModuleNotFoundError')
      throw new VideoPythonUnavailable(e.pythonMessage, e.pythonType)
    throw e
  }
}
