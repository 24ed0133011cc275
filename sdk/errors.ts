/** One problem in a user input: where it is, and what to do about it. */
export interface InputIssue {
  /** Dotted field path (`model.ssm_layer`) or a storyboard location (`video[2].segment[0].text`). */
  path: string
  message: string
  line?: number
  column?: number
  /** The file the issue is in, when it differs from the error's file (data preparation). */
  file?: string
}

function formatIssues(file: string | undefined, issues: InputIssue[]): string {
  const where = (i: InputIssue) => {
    const f = i.file ?? file
    const pos =
      i.line !== undefined ? `${f ?? '<input>'}:${i.line}${i.column !== undefined ? `:${i.column}` : ''}` : f
    return [pos, i.path].filter(Boolean).join(': ')
  }
  return issues.map((i) => `${where(i) ? `${where(i)}: ` : ''}${i.message}`).join('\n')
}

/** Base of every error the SDK raises on purpose; `code` matches the Python event error codes. */
export class TttVideoError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** An input that cannot be used: the issues say where (field paths, lines) and what to do. */
abstract class InputError extends TttVideoError {
  readonly file: string | undefined
  readonly issues: InputIssue[]
  constructor(code: string, issues: InputIssue[], file?: string) {
    super(code, formatIssues(file, issues))
    this.file = file
    this.issues = issues
  }
}

/** A configuration that cannot be used: bad TOML, unknown or mistyped fields, broken cross-field rules. */
export class ConfigError extends InputError {
  constructor(issues: InputIssue[], file?: string) {
    super('CONFIG', issues, file)
  }
}

/** A storyboard that cannot be used: bad JSON, unknown keys, empty text, a wrong number of segments. */
export class StoryboardError extends InputError {
  constructor(issues: InputIssue[], file?: string) {
    super('STORYBOARD', issues, file)
  }
}

/** Training data that cannot be used: bad annotation lines, unreadable clips, a broken dataset folder. */
export class DataError extends InputError {
  constructor(issues: InputIssue[], file?: string) {
    super('DATA', issues, file)
  }
}

/** The managed Python environment is missing or broken. */
export class PythonRuntimeError extends TttVideoError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('RUNTIME', message, options)
  }
}

/** What a failed run leaves behind for diagnosis. */
export interface RunFailure {
  /** The error code of the Python event (`CONFIG`, `OUT_OF_MEMORY`, ...), when one was reported. */
  pythonCode?: string
  /** The last lines the processes printed (stdout and stderr). */
  logTail: string[]
  runDir?: string
  hint?: string
  traceback?: string
}

abstract class RunError extends TttVideoError {
  readonly logTail: string[]
  readonly runDir: string | undefined
  readonly hint: string | undefined
  readonly traceback: string | undefined
  readonly pythonCode: string | undefined
  constructor(code: string, message: string, failure: RunFailure) {
    super(code, failure.hint ? `${message}\n  hint: ${failure.hint}` : message)
    this.logTail = failure.logTail
    this.runDir = failure.runDir
    this.hint = failure.hint
    this.traceback = failure.traceback
    this.pythonCode = failure.pythonCode
  }
}

/** The model bundle (or a part of it) is not where the options or the config say. */
export class WeightsNotFoundError extends RunError {
  constructor(message: string, failure: RunFailure = { logTail: [] }) {
    super('WEIGHTS_MISSING', message, failure)
  }
}

/** Weights that exist but cannot be used: a truncated or corrupted file, a broken config.json. */
export class WeightsError extends RunError {
  constructor(message: string, failure: RunFailure = { logTail: [] }) {
    super('WEIGHTS', message, failure)
  }
}

/** The model produced NaN or infinite values (broken weights, or an unstable setting). */
export class NonFiniteError extends RunError {
  constructor(message: string, failure: RunFailure) {
    super('NON_FINITE', message, failure)
  }
}

/** A GPU (or the machine) ran out of memory. */
export class OutOfMemoryError extends RunError {
  constructor(message: string, failure: RunFailure) {
    super('OUT_OF_MEMORY', message, failure)
  }
}

/** A process of a multi-process run failed, could not be reached, or was stopped by torchrun. */
export class DistributedError extends RunError {
  constructor(message: string, failure: RunFailure) {
    super('DISTRIBUTED', message, failure)
  }
}

/** The Python side failed in an unexpected way (a bug, or a broken environment). */
export class RunFailedError extends RunError {
  constructor(message: string, failure: RunFailure) {
    super(failure.pythonCode ?? 'INTERNAL', message, failure)
  }
}

/** The run was cancelled (AbortSignal, `cancel()`, Ctrl-C); finished videos stay in the run directory. */
export class CancelledError extends TttVideoError {
  readonly runDir: string | undefined
  constructor(message: string, runDir?: string) {
    super('CANCELLED', message)
    this.runDir = runDir
  }
}
