/** The errors the bridge raises, all `TttVideoError`s with a stable `code`. */
import { TttVideoError } from '../../errors.js'

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
