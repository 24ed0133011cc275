import type { InputIssue } from '../errors.js'
import type { components } from './api.gen.js'

export type Problem = components['schemas']['Problem']
export type ProblemIssue = components['schemas']['ProblemIssue']

const TITLES: Record<number, string> = {
  400: 'Bad request',
  401: 'Unauthorized',
  404: 'Not found',
  405: 'Method not allowed',
  409: 'Conflict',
  413: 'Request body too large',
  415: 'Unsupported media type',
  416: 'Range not satisfiable',
  422: 'Invalid request',
  500: 'Internal server error',
  503: 'Service unavailable',
}

/** An error that becomes a problem-details response (RFC 9457). */
export class HttpError extends Error {
  readonly status: number
  readonly kind: string
  readonly code: string | undefined
  readonly issues: ProblemIssue[] | undefined
  readonly headers: Record<string, string>

  constructor(
    status: number,
    kind: string,
    detail: string,
    extra: { code?: string; issues?: ProblemIssue[]; headers?: Record<string, string> } = {},
  ) {
    super(detail)
    this.name = 'HttpError'
    this.status = status
    this.kind = kind
    this.code = extra.code
    this.issues = extra.issues
    this.headers = extra.headers ?? {}
  }

  toProblem(instance?: string): Problem {
    return {
      type: `urn:ttt-video:problem:${this.kind}`,
      title: TITLES[this.status] ?? 'Error',
      status: this.status,
      detail: this.message,
      ...(instance ? { instance } : {}),
      ...(this.code ? { code: this.code } : {}),
      ...(this.issues ? { errors: this.issues } : {}),
    }
  }
}

/** A 422 listing each bad field of the request. */
export function invalid(issues: (InputIssue | ProblemIssue)[], code?: string): HttpError {
  const list = issues.map(
    (i): ProblemIssue => ({
      path: i.path,
      message: i.message,
      ...(i.line !== undefined ? { line: i.line } : {}),
      ...(i.column !== undefined ? { column: i.column } : {}),
    }),
  )
  const detail = list.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('\n')
  return new HttpError(422, 'invalid-request', detail, { issues: list, ...(code ? { code } : {}) })
}
