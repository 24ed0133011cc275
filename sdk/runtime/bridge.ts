/**
 * The in-process Python bridge: pythonia (JSPyBridge) behind one JSON-in/JSON-out call.
 *
 * pythonia runs one Python child per Node process and exposes Python objects as proxies. We use none of
 * that: the only call is `ttt_video.bridge_facade.call(target, argsJson, progress)`, which answers a JSON
 * string (see python/ttt_video/bridge_facade.py). On top of it this module adds what pythonia lacks:
 * typed errors with the Python traceback, no NaN on the wire, calls run one at a time, a dead Python
 * rejects pending calls at once, the child dies with Node, Node exits when nothing is running, timeouts and
 * AbortSignals that stop the Python work cooperatively. See docs/bridge.md.
 */
import type { ChildProcess } from 'node:child_process'
import { stripVTControlCharacters } from 'node:util'
import { TttVideoError } from '../errors.js'
import type { PythonDoctorReport } from './doctor.js'
import { resolveVenvDir, venvPython } from './paths.js'

const FACADE = 'ttt_video.bridge_facade'

/** A Python exception raised by the called function, with its type and traceback. */
export class PythonCallError extends TttVideoError {
  /** The called `module.function`. */
  readonly target: string
  /** The Python exception class name, e.g. `ValueError`. */
  readonly pythonType: string
  readonly pythonMessage: string
  /** The full Python traceback (`traceback.format_exc()`). */
  readonly traceback: string
  constructor(target: string, pythonType: string, pythonMessage: string, traceback: string, code?: string) {
    super(code ?? 'PYTHON', `${target} raised ${pythonType}: ${pythonMessage}`)
    this.target = target
    this.pythonType = pythonType
    this.pythonMessage = pythonMessage
    this.traceback = traceback
  }
}

/** The bridge itself failed: Python would not start, died, or the bridge was closed. */
export class PythonBridgeError extends TttVideoError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BRIDGE', message, options)
  }
}

/** The call was cancelled through its AbortSignal; Python stopped (or never started) the work. */
export class PythonCancelledError extends TttVideoError {
  readonly target: string
  constructor(target: string, reason?: unknown) {
    super('CANCELLED', `${target} was cancelled`, { cause: reason })
    this.target = target
  }
}

/** The call ran past `timeoutMs`; Python is asked to stop at its next progress report. */
export class PythonTimeoutError extends TttVideoError {
  readonly target: string
  readonly timeoutMs: number
  constructor(target: string, timeoutMs: number) {
    super('TIMEOUT', `${target} did not finish within ${timeoutMs} ms`)
    this.target = target
    this.timeoutMs = timeoutMs
  }
}

export interface BridgeOptions {
  /** The managed virtual environment (default: $TTT_VIDEO_VENV or <package>/.venv). */
  venvDir?: string
  /** The interpreter; overrides `venvDir`. It must be able to import `ttt_video`. */
  python?: string
  /** Folders put first on Python's sys.path, where `call` targets are imported from. */
  sysPath?: string[]
  /** Extra environment for the Python process (e.g. CUDA_VISIBLE_DEVICES). */
  env?: Record<string, string>
}

export interface CallOptions {
  /**
   * Receives each event the target reports. Targets that take a `progress` parameter get a function to
   * call with one JSON-able event per step; NaN/infinity in events arrive as null.
   */
  onProgress?: (event: unknown) => void
  /** Rejects with PythonTimeoutError after this long and asks Python to stop (default: no limit). */
  timeoutMs?: number
  /**
   * Cancels the call. Python stops at the target's next progress report (it raises
   * `ttt_video.bridge_facade.Cancelled`) and the call then rejects with PythonCancelledError. A target
   * that reports no progress runs to its end; `close()` the bridge to stop it at once.
   */
  signal?: AbortSignal
}

export interface PythonBridge {
  /** The Python process id (undefined once closed). */
  readonly pid: number | undefined
  /** The interpreter the bridge runs. */
  readonly python: string
  readonly closed: boolean
  /**
   * Calls the Python function `target` (`package.module.function`) with `args` as keyword arguments and
   * resolves to its JSON-decoded return value. Calls run one at a time, in order.
   */
  call<T = unknown>(target: string, args?: Record<string, unknown>, options?: CallOptions): Promise<T>
  /** Stops Python (SIGTERM, then SIGKILL after 5 s) and rejects pending calls; resolves when it is gone. */
  close(): Promise<void>
}

type Outcome =
  | { ok: true; value: unknown }
  | { ok: false; type: string; message: string; traceback: string; code: string | null }

interface PythoniaCom {
  proc: ChildProcess | null
  start(): void
}
interface Pythonia {
  python: ((module: string) => Promise<PyFacade>) & { exit(): void; setFastMode(on: boolean): void }
  com: PythoniaCom
  /** pythonia's Bridge: `loop` is the 1 s interval that frees proxies. */
  bridge: { loop?: NodeJS.Timeout; runTasks: () => void } | undefined
}
interface PyFacade {
  call$(target: string, argsJson: string, kwargs: Record<string, unknown>): Promise<string>
  add_sys_path(paths: string[]): Promise<unknown>
  install_parent_death_signal(): Promise<boolean>
}

let pythonia: Pythonia | undefined
let active: PythonBridge | undefined
let starting: Promise<PythonBridge> | undefined

/** Spawns Python through pythonia with PYTHON_BIN (and `env`) set for the spawn only. */
async function spawnPython(python: string, env: Record<string, string>): Promise<Pythonia> {
  const saved = new Map<string, string | undefined>()
  const set = (k: string, v: string) => {
    if (!saved.has(k)) saved.set(k, process.env[k])
    process.env[k] = v
  }
  set('PYTHON_BIN', python)
  // pythonia reads REQ_TIMEOUT once, at load; its default (100 s) would fail long calls.
  if (!pythonia) set('REQ_TIMEOUT', '0')
  for (const [k, v] of Object.entries(env)) set(k, v)
  try {
    if (!pythonia) {
      const mod = (await import('pythonia')) as unknown as {
        default: { python: Pythonia['python']; com: PythoniaCom }
      }
      pythonia = {
        python: mod.default.python,
        com: mod.default.com,
        get bridge() {
          return (globalThis as { __pythonBridge?: Pythonia['bridge'] }).__pythonBridge
        },
      }
    } else if (!pythonia.com.proc) {
      pythonia.com.start()
      // python.exit() stopped the proxy-freeing interval; a restarted bridge needs it again.
      const b = pythonia.bridge
      if (b) b.loop = setInterval(b.runTasks, 1000)
    }
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
  pythonia.bridge?.loop?.unref()
  return pythonia
}

/** pythonia's own exceptions have an empty message; the last line of the stack says what happened. */
function describePythoniaError(e: unknown): string {
  if (!(e instanceof Error)) return String(e)
  if (e.message) return e.message
  const lines = (e.stack ?? '').split('\n').filter((l) => l.trim())
  return stripVTControlCharacters(lines.at(-1) ?? e.constructor.name).replace(
    /^.*?(\*\*\* JS \*\*\* |🌉\s*)/u,
    '',
  )
}

/**
 * Starts the Python bridge. pythonia allows one Python per Node process, so a second start while one is
 * open throws; use `getBridge()` to share it.
 */
export async function startBridge(options: BridgeOptions = {}): Promise<PythonBridge> {
  if (starting || (active && !active.closed)) {
    throw new PythonBridgeError(
      `a Python bridge${active ? ` (${active.python}, pid ${active.pid})` : ''} is already open in this process; pythonia allows one, so close() it first or use getBridge()`,
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

async function openBridge(options: BridgeOptions): Promise<PythonBridge> {
  const python = options.python ?? venvPython(resolveVenvDir(options.venvDir))
  const py = await spawnPython(python, options.env ?? {})
  const proc = py.com.proc
  if (!proc) throw new PythonBridgeError(`pythonia did not start ${python}`)

  let dead: Error | undefined
  let closing = false
  const waiters = new Set<(e: Error) => void>()
  const markDead = (e: Error) => {
    dead ??= e
    for (const reject of waiters) reject(dead)
    waiters.clear()
  }
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', (code, signal) => {
      // Let pythonia forget the dead process, so that a later startBridge() spawns a new one.
      if (pythonia?.com.proc === proc) py.python.exit()
      markDead(
        new PythonBridgeError(
          closing
            ? 'the Python bridge was closed'
            : `the Python bridge process exited (code ${code}, signal ${signal})`,
        ),
      )
      resolve()
    })
    proc.on('error', (e) => {
      markDead(
        new PythonBridgeError(`the Python bridge could not start ${python}: ${e.message}`, { cause: e }),
      )
      if (proc.pid === undefined) resolve() // never spawned: no 'exit' follows
    })
  })
  /** Races a pythonia promise against the death of the process. */
  const guard = <T>(p: Promise<T>): Promise<T> => {
    if (dead) return Promise.reject(dead)
    let remove!: () => void
    const died = new Promise<never>((_, reject) => {
      waiters.add(reject)
      remove = () => waiters.delete(reject)
    })
    return Promise.race([p, died]).finally(remove)
  }

  // Keep the event loop alive only while calls are running: an idle bridge never holds Node open.
  let busy = 0
  const hold = (on: boolean) => {
    busy += on ? 1 : -1
    if (busy > 0) {
      proc.ref()
      proc.channel?.ref()
    } else {
      proc.unref()
      proc.channel?.unref()
    }
  }

  let facade: PyFacade
  hold(true)
  try {
    await guard(Promise.resolve(py.python.setFastMode(true)))
    facade = await guard(py.python(FACADE)).catch((e: unknown) => {
      if (e instanceof PythonBridgeError) throw e
      throw new PythonBridgeError(
        `${python} cannot import ${FACADE} (${describePythoniaError(e)}); run \`npx ttt-video setup\``,
        { cause: e },
      )
    })
    if (options.sysPath?.length) await guard(facade.add_sys_path(options.sysPath))
    if (process.platform === 'linux') await guard(facade.install_parent_death_signal())
  } catch (e) {
    closing = true
    py.python.exit()
    await exited
    throw e
  } finally {
    hold(false)
  }

  let chain: Promise<unknown> = Promise.resolve()

  /** Sends one call; `value` is the caller's answer, `settled` resolves once Python is free again. */
  function start<T>(
    target: string,
    args: Record<string, unknown>,
    opts: CallOptions,
  ): { value: Promise<T>; settled: Promise<void> } {
    const { signal, timeoutMs, onProgress } = opts
    if (dead) throw dead
    let stop: 'abort' | 'timeout' | 'listener' | undefined
    let listenerError: unknown
    const onAbort = () => {
      stop ??= 'abort'
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    // Python calls this at each step; `false` makes it raise Cancelled.
    const progress =
      onProgress || signal || timeoutMs !== undefined
        ? (event: string): boolean => {
            if (stop) return false
            try {
              onProgress?.(JSON.parse(event))
            } catch (e) {
              listenerError = e
              stop = 'listener'
            }
            return !stop
          }
        : null
    const argsJson = JSON.stringify(args) // NaN becomes null, undefined fields are dropped
    const pythonCall = guard(facade.call$(target, argsJson, { progress, $timeout: Number.POSITIVE_INFINITY }))
    const settled = pythonCall.then(
      () => signal?.removeEventListener('abort', onAbort),
      () => signal?.removeEventListener('abort', onAbort),
    )
    const answer = pythonCall.then((raw) => {
      const outcome = JSON.parse(raw) as Outcome
      if (stop === 'listener') throw listenerError
      if (stop === 'abort') throw new PythonCancelledError(target, signal?.reason)
      if (stop === 'timeout') throw new PythonTimeoutError(target, timeoutMs ?? 0)
      if (!outcome.ok) {
        throw new PythonCallError(
          target,
          outcome.type,
          outcome.message,
          outcome.traceback,
          outcome.code ?? undefined,
        )
      }
      return outcome.value as T
    })
    if (timeoutMs === undefined) return { value: answer, settled }
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        stop ??= 'timeout'
        reject(new PythonTimeoutError(target, timeoutMs))
      }, timeoutMs)
    })
    void settled.then(() => clearTimeout(timer))
    return { value: Promise.race([answer, timedOut]), settled }
  }

  const bridge: PythonBridge = {
    python,
    get pid() {
      return dead ? undefined : proc.pid
    },
    get closed() {
      return dead !== undefined
    },
    call<T>(target: string, args: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<T> {
      const { signal } = opts
      hold(true)
      const previous = chain
      let settled: Promise<void> | undefined
      const value = new Promise<T>((resolve, reject) => {
        // A queued call whose signal fires rejects at once and never reaches Python.
        let cancelled = false
        const onAbort = () => {
          cancelled = true
          reject(new PythonCancelledError(target, signal?.reason))
        }
        if (signal?.aborted) return onAbort()
        signal?.addEventListener('abort', onAbort, { once: true })
        previous
          .then(() => {
            signal?.removeEventListener('abort', onAbort)
            if (cancelled) return
            const started = start<T>(target, args, opts)
            settled = started.settled
            started.value.then(resolve, reject)
          })
          .catch(reject)
      })
      // The next call starts when Python is free, even when this one's caller stopped waiting (timeout).
      chain = previous.then(() =>
        value.then(
          () => settled,
          () => settled,
        ),
      )
      return value.finally(() => hold(false))
    },
    async close() {
      if (!dead) {
        closing = true
        markDead(new PythonBridgeError('the Python bridge was closed'))
        proc.ref() // keep Node alive until Python has gone
        if (pythonia?.com.proc === proc)
          py.python.exit() // SIGTERM, and stops pythonia's interval
        else proc.kill('SIGTERM')
        const kill = setTimeout(() => proc.kill('SIGKILL'), 5000)
        await exited
        clearTimeout(kill)
      }
      await exited
      if (active === bridge) active = undefined
    },
  }
  return bridge
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

/** The Python half of `doctor()`, through the bridge (`ttt_video.doctor.doctor_report`). */
export function doctorViaBridge(
  options: CallOptions & BridgeOptions & { diskPath?: string } = {},
): Promise<PythonDoctorReport> {
  return callPython('ttt_video.doctor.doctor_report', { disk_path: options.diskPath ?? '.' }, options)
}

/** One `*.safetensors` file, from its header. `error` is set (and the rest absent) when it is unreadable. */
export interface SafetensorsFileInfo {
  file: string
  bytes: number
  tensors?: number
  parameters?: number
  tensor_bytes?: number
  dtypes?: Record<string, number>
  metadata?: Record<string, string>
  error?: string
}

export interface BundleComponentInfo {
  present: boolean
  path: string
  files?: string[]
  config?: Record<string, unknown> | null
  safetensors?: {
    files: SafetensorsFileInfo[]
    tensors: number
    parameters: number
    /** Tensor data bytes (headers excluded). */
    bytes: number
    dtypes: Record<string, number>
    index?: { file: string; shards: string[]; missing: string[] }
  }
  /** Pickled checkpoints found (listed, never opened). */
  pickle_files?: string[]
  errors?: string[]
}

/** What `ttt_video.bundle_info.inspect_bundle` reports about a model bundle folder (contract 4). */
export interface BundleInfo {
  path: string
  exists: boolean
  components: Record<'transformer' | 'vae' | 'text_encoder' | 'tokenizer', BundleComponentInfo>
  missing: string[]
  /** What stops the bundle from loading, one line each; empty when `complete`. */
  problems: string[]
  complete: boolean
}

/** Describes a model bundle folder (configs, safetensors headers) without loading weights. */
export function inspectBundle(path: string, options: CallOptions & BridgeOptions = {}): Promise<BundleInfo> {
  return callPython('ttt_video.bundle_info.inspect_bundle', { path }, options)
}

export interface ConvertWeightsOptions extends Omit<CallOptions, 'onProgress'>, BridgeOptions {
  onProgress?: (event: ConvertProgress) => void
  ssmLayer?: 'ttt_mlp' | 'ttt_linear' | 'none'
  /** Seed of the new TTT parameters (default 0). */
  seed?: number
  /** Copy vae/, text_encoder/ and tokenizer/ instead of linking them. */
  copy?: boolean
  shardSizeBytes?: number
}

/** A progress event of `convertWeights` (`convert.started`, `convert.progress`, `convert.shard`, `convert.finished`). */
export interface ConvertProgress {
  type: string
  done?: number
  total?: number
  [key: string]: unknown
}

/** Converts a diffusers CogVideoX snapshot (or its transformer/) into a TTT-Video bundle; returns its path. */
export function convertWeights(
  from: string,
  to: string,
  options: ConvertWeightsOptions = {},
): Promise<string> {
  return callPython<string>(
    'ttt_video.checkpoints.convert_diffusers',
    {
      src: from,
      dst: to,
      ssm_layer: options.ssmLayer ?? 'ttt_mlp',
      seed: options.seed ?? 0,
      link: options.copy !== true,
      ...(options.shardSizeBytes !== undefined ? { max_shard_bytes: options.shardSizeBytes } : {}),
    },
    { ...options, onProgress: options.onProgress as ((event: unknown) => void) | undefined },
  )
}
