/**
 * One call across the bridge: `facade.call(target, argsJson, progress)`, with the progress callback that
 * doubles as cooperative cancellation (it answers `false` once the caller wants Python to stop), the
 * timeout, and the decoding of the facade's JSON answer into a value or a typed error.
 */
import { PythonCallError, PythonCancelledError, PythonTimeoutError } from './errors.js'
import type { Liveness } from './liveness.js'
import type { PyFacade } from './pythonia.js'
import type { CallOptions } from './types.js'

/** The facade's answer (python/ttt_video/bridge_facade.py). */
type Outcome =
  | { ok: true; value: unknown }
  | { ok: false; type: string; message: string; traceback: string; code: string | null }

/** Why the caller wants Python to stop, if it does; the first reason wins, except a throwing listener. */
interface Stop {
  reason?: 'abort' | 'timeout' | 'listener'
  listenerError?: unknown
}

/** A call sent to Python: `value` is the caller's answer, `settled` resolves once Python is free again. */
export interface SentCall<T> {
  value: Promise<T>
  settled: Promise<void>
}

/** The function Python calls at each step (null when nobody listens or can stop the call). */
function progressCallback(stop: Stop, opts: CallOptions): ((event: string) => boolean) | null {
  const { onProgress, signal, timeoutMs } = opts
  if (!onProgress && !signal && timeoutMs === undefined) return null
  return (event: string): boolean => {
    if (stop.reason) return false
    try {
      onProgress?.(JSON.parse(event))
    } catch (e) {
      stop.listenerError = e
      stop.reason = 'listener'
    }
    return !stop.reason
  }
}

/** The caller's answer: a stop overrides what Python returned; a Python exception is a PythonCallError. */
function decode<T>(raw: string, target: string, stop: Stop, opts: CallOptions): T {
  const outcome = JSON.parse(raw) as Outcome
  if (stop.reason === 'listener') throw stop.listenerError
  if (stop.reason === 'abort') throw new PythonCancelledError(target, opts.signal?.reason)
  if (stop.reason === 'timeout') throw new PythonTimeoutError(target, opts.timeoutMs ?? 0)
  if (!outcome.ok) {
    const { type, message, traceback, code } = outcome
    throw new PythonCallError(target, type, message, traceback, code ?? undefined)
  }
  return outcome.value as T
}

/** Rejects `answer`'s caller after `timeoutMs` (and asks Python to stop); the timer ends with the call. */
function withTimeout<T>(
  answer: Promise<T>,
  settled: Promise<void>,
  stop: Stop,
  target: string,
  timeoutMs: number,
) {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      stop.reason ??= 'timeout'
      reject(new PythonTimeoutError(target, timeoutMs))
    }, timeoutMs)
  })
  void settled.then(() => clearTimeout(timer))
  return Promise.race([answer, timedOut])
}

/** Sends one call to Python now; throws `life.dead` if Python can no longer answer. */
export function sendCall<T>(
  facade: PyFacade,
  life: Liveness,
  target: string,
  args: Record<string, unknown>,
  opts: CallOptions,
): SentCall<T> {
  if (life.dead) throw life.dead
  const { signal, timeoutMs } = opts
  const stop: Stop = {}
  const onAbort = () => {
    stop.reason ??= 'abort'
  }
  signal?.addEventListener('abort', onAbort, { once: true })
  const progress = progressCallback(stop, opts)
  const argsJson = JSON.stringify(args) // NaN becomes null, undefined fields are dropped
  const pythonCall = life.guard(
    facade.call$(target, argsJson, { progress, $timeout: Number.POSITIVE_INFINITY }),
  )
  const forget = () => signal?.removeEventListener('abort', onAbort)
  const settled = pythonCall.then(forget, forget)
  const answer = pythonCall.then((raw) => decode<T>(raw, target, stop, opts))
  if (timeoutMs === undefined) return { value: answer, settled }
  return { value: withTimeout(answer, settled, stop, target, timeoutMs), settled }
}
