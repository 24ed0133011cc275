import type { Client } from 'openapi-fetch'
import type { components, paths } from '../api.gen.js'

export type JobStatus = components['schemas']['Job']
export type JobRequestBody = components['schemas']['JobRequest']
export type ServiceRunEvent = components['schemas']['RunEvent']
export type Problem = components['schemas']['Problem']

/** An error answer of the service, with its problem details. */
export class ServiceError extends Error {
  readonly status: number
  readonly problem: Problem | undefined
  constructor(status: number, problem: Problem | undefined, fallback: string) {
    super(
      problem ? `${problem.title} (${status}): ${problem.detail ?? ''}`.trim() : `${fallback} (${status})`,
    )
    this.name = 'ServiceError'
    this.status = status
    this.problem = problem
  }
}

export interface ClientOptions {
  /** The service, e.g. `http://127.0.0.1:8470`. */
  baseUrl: string | URL
  token: string
  /** A fetch to use instead of the global one. */
  fetch?: (input: Request) => Promise<Response>
}

export interface FollowOptions {
  signal?: AbortSignal
  /** Start after this event id (the events with higher ids follow); default: from the first event. */
  after?: number
  /** Reconnections in a row before giving up when the stream breaks off; default 5. */
  retries?: number
}

export interface TttVideoClientHelpers {
  /** Submits a job; resolves to its status (state `queued`). Throws ServiceError (422: `problem.errors`). */
  submitJob(request: JobRequestBody, init?: { signal?: AbortSignal }): Promise<JobStatus>
  /** The job's status. */
  getJob(id: string, init?: { signal?: AbortSignal }): Promise<JobStatus>
  /**
   * The job's events, past ones first, until the job ends (over SSE; a broken stream is resumed with
   * Last-Event-ID, so nothing is missed or repeated).
   */
  followJob(id: string, options?: FollowOptions): AsyncIterable<ServiceRunEvent>
  /** Resolves to the job's final status once it has ended (whatever the state). */
  waitForJob(id: string, options?: { signal?: AbortSignal }): Promise<JobStatus>
  /** Writes a finished video to `file` (atomically); resolves to `file`. */
  downloadVideo(id: string, index: number, file: string, init?: { signal?: AbortSignal }): Promise<string>
  /** Deletes an ended job and its files (a job that has not ended is a ServiceError 409). */
  deleteJob(id: string, init?: { signal?: AbortSignal }): Promise<void>
}

/** The typed openapi-fetch client of the service (GET/POST/... on its paths) plus helpers. */
export type TttVideoClient = Client<paths> & TttVideoClientHelpers
export type Api = Client<paths>
