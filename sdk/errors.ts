/** One problem in a user input: where it is, and what to do about it. */
export interface InputIssue {
  /** Dotted field path (`model.ssm_layer`) or a storyboard location (`video 2, segment 0, text`). */
  path: string
  message: string
  line?: number
  column?: number
}

function formatIssues(file: string | undefined, issues: InputIssue[]): string {
  const where = (i: InputIssue) => {
    const pos =
      i.line !== undefined
        ? `${file ?? '<input>'}:${i.line}${i.column !== undefined ? `:${i.column}` : ''}`
        : file
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

/** A configuration that cannot be used: bad TOML, unknown or mistyped fields, broken cross-field rules. */
export class ConfigError extends TttVideoError {
  readonly file: string | undefined
  readonly issues: InputIssue[]
  constructor(issues: InputIssue[], file?: string) {
    super('CONFIG', formatIssues(file, issues))
    this.file = file
    this.issues = issues
  }
}

/** A storyboard that cannot be used: bad JSON, unknown keys, empty text, a wrong number of segments. */
export class StoryboardError extends TttVideoError {
  readonly file: string | undefined
  readonly issues: InputIssue[]
  constructor(issues: InputIssue[], file?: string) {
    super('STORYBOARD', formatIssues(file, issues))
    this.file = file
    this.issues = issues
  }
}

/** The managed Python environment is missing or broken. */
export class PythonRuntimeError extends TttVideoError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('RUNTIME', message, options)
  }
}
