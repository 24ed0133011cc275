/**
 * pythonia (JSPyBridge), the one Python child per Node process: loading it, (re)spawning Python with the
 * interpreter we choose, letting it forget a process, and reading its errors.
 */
import type { ChildProcess } from 'node:child_process'
import { stripVTControlCharacters } from 'node:util'

/** The Python module whose `call` is the only function that crosses the bridge. */
export const FACADE = 'ttt_video.bridge_facade'

/** The proxy of `ttt_video.bridge_facade` (python/ttt_video/bridge_facade.py). */
export interface PyFacade {
  call$(target: string, argsJson: string, kwargs: Record<string, unknown>): Promise<string>
  add_sys_path(paths: string[]): Promise<unknown>
  install_parent_death_signal(): Promise<boolean>
}

interface PythoniaCom {
  proc: ChildProcess | null
  start(): void
}

/** What we use of the pythonia module. */
export interface Pythonia {
  python: ((module: string) => Promise<PyFacade>) & { exit(): void; setFastMode(on: boolean): void }
  com: PythoniaCom
  /** pythonia's Bridge: `loop` is the 1 s interval that frees proxies. */
  bridge: PythoniaBridge | undefined
}

interface PythoniaBridge {
  loop?: NodeJS.Timeout
  runTasks: () => void
  /** Python object ids whose JS proxies were collected, sent to Python to free each second. */
  freeable: number[]
  finalizer: { register(value: object, ffid: number): void }
  jsi: { m: Record<number, unknown> }
}

let pythonia: Pythonia | undefined
/** Which Python process of this Node process is current (pythonia restarts Python in place). */
let session = 0

/**
 * pythonia frees a Python object when its JS proxy is garbage-collected. A proxy of an earlier Python
 * process can be collected after a restart, and its id then names another object of the new process
 * (ids restart at 1: the facade itself), which pythonia would free. So proxies are registered with
 * their session, and only the current session's ids are freed.
 */
function freeOnlyCurrentSession(bridge: PythoniaBridge): void {
  const registry = new FinalizationRegistry(({ ffid, of }: { ffid: number; of: number }) => {
    if (of !== session) return
    bridge.freeable.push(ffid)
    delete bridge.jsi.m[ffid]
  })
  bridge.finalizer = { register: (value, ffid) => registry.register(value, { ffid, of: session }) }
}

/** Sets environment variables until the returned function restores them. */
function setEnv(vars: Record<string, string>): () => void {
  const saved = new Map<string, string | undefined>()
  for (const [k, v] of Object.entries(vars)) {
    if (!saved.has(k)) saved.set(k, process.env[k])
    process.env[k] = v
  }
  return () => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}

/** Imports pythonia, which spawns its Python at once. */
async function loadPythonia(): Promise<Pythonia> {
  const mod = (await import('pythonia')) as unknown as {
    default: { python: Pythonia['python']; com: PythoniaCom }
  }
  return {
    python: mod.default.python,
    com: mod.default.com,
    get bridge() {
      return (globalThis as { __pythonBridge?: Pythonia['bridge'] }).__pythonBridge
    },
  }
}

/** Spawns Python through pythonia with PYTHON_BIN (and `env`) set for the spawn only. */
export async function spawnPython(python: string, env: Record<string, string>): Promise<Pythonia> {
  // pythonia reads REQ_TIMEOUT once, at load; its default (100 s) would fail long calls.
  const restore = setEnv({ PYTHON_BIN: python, ...(pythonia ? {} : { REQ_TIMEOUT: '0' }), ...env })
  try {
    if (!pythonia) {
      pythonia = await loadPythonia()
      if (pythonia.bridge) freeOnlyCurrentSession(pythonia.bridge)
    } else if (!pythonia.com.proc) {
      session++
      pythonia.com.start()
      // python.exit() stopped the proxy-freeing interval; a restarted bridge needs it again.
      const b = pythonia.bridge
      if (b) {
        b.freeable = []
        b.loop = setInterval(b.runTasks, 1000)
      }
    }
  } finally {
    restore()
  }
  pythonia.bridge?.loop?.unref()
  return pythonia
}

/**
 * If `proc` is pythonia's current process, stops it (SIGTERM, and pythonia's interval) and makes pythonia
 * forget it, so that the next `spawnPython` starts a new one. Answers whether it did.
 */
export function releasePython(proc: ChildProcess): boolean {
  if (!pythonia || pythonia.com.proc !== proc) return false
  pythonia.python.exit()
  return true
}

/** pythonia's own exceptions have an empty message; the last line of the stack says what happened. */
export function describePythoniaError(e: unknown): string {
  if (!(e instanceof Error)) return String(e)
  if (e.message) return e.message
  const lines = (e.stack ?? '').split('\n').filter((l) => l.trim())
  return stripVTControlCharacters(lines.at(-1) ?? e.constructor.name).replace(
    /^.*?(\*\*\* JS \*\*\* |🌉\s*)/u,
    '',
  )
}
