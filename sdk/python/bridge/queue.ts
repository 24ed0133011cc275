/**
 * Calls run one at a time, in call order. pythonia's Python side would otherwise service a queued request
 * inside another call's progress callback. A queued call whose signal fires rejects at once and never
 * reaches Python; the next call starts when Python is free, even when a caller stopped waiting (timeout).
 */
import type { SentCall } from './call.js'
import { PythonCancelledError } from './errors.js'

export class CallQueue {
  /** Resolves once Python has finished every call queued so far; never rejects. */
  #idle: Promise<unknown> = Promise.resolve()

  /**
   * Runs `send` once every earlier call has settled in Python, and answers its value. If `signal` fires
   * first, rejects with PythonCancelledError and never runs `send`.
   */
  run<T>(target: string, signal: AbortSignal | undefined, send: () => SentCall<T>): Promise<T> {
    const previous = this.#idle
    let settled: Promise<void> | undefined
    const value = new Promise<T>((resolve, reject) => {
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
          const sent = send()
          settled = sent.settled
          sent.value.then(resolve, reject)
        })
        .catch(reject)
    })
    this.#idle = previous.then(() =>
      value.then(
        () => settled,
        () => settled,
      ),
    )
    return value
  }
}
