import { createWriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import createFetchClient, { type Client } from 'openapi-fetch'
import type { components, paths } from './api.gen.js'

export type JobStatus = components['schemas']['Job']
export type JobRequestBody = components['schemas']['JobRequest']
export type ServiceRunEvent = components['schemas']['RunEvent']
export type Problem = components['schemas']['Problem']

const TERMINAL = new Set<JobStatus['state']>(['succeeded', 'failed', 'cancelled', 'interrupted'])

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
}

/** The typed openapi-fetch client of the service (GET/POST/... on its paths) plus helpers. */
export type TttVideoClient = Client<paths> & TttVideoClientHelpers

/** One Server-Sent Events message. */
export interface SseMessage {
  id: string | undefined
  event: string
  data: string
}

/** Parses an SSE byte stream into messages (comments and `retry:` are skipped). */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder()
  let buffer = ''
  let id: string | undefined
  let event = ''
  let data: string[] = []
  const reader = body.getReader()
  try {
    for (;;) {
      const { value, done } = await reader.read()
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true })
      let newline = buffer.search(/\r\n|\r|\n/)
      while (newline >= 0) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1))
        if (line === '') {
          if (data.length > 0) yield { id, event: event || 'message', data: data.join('\n') }
          event = ''
          data = []
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':')
          const field = colon < 0 ? line : line.slice(0, colon)
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
          if (field === 'data') data.push(value)
          else if (field === 'event') event = value
          else if (field === 'id') id = value
        }
        newline = buffer.search(/\r\n|\r|\n/)
      }
      if (done) return
    }
  } finally {
    reader.releaseLock()
    await body.cancel().catch(() => {})
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer)
        reject(signal.reason)
      },
      { once: true },
    )
  })

/** A client of the ttt-video job service: `client.GET('/v1/jobs/{id}', ...)` and the helpers. */
export function createClient(options: ClientOptions): TttVideoClient {
  const baseUrl = String(options.baseUrl).replace(/\/+$/, '')
  const client = createFetchClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${options.token}` },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  })
  const fail = (response: Response, error: unknown, what: string): never => {
    const problem = error && typeof error === 'object' && 'status' in error ? (error as Problem) : undefined
    throw new ServiceError(response.status, problem, what)
  }

  const helpers: TttVideoClientHelpers = {
    async submitJob(request, init = {}) {
      const { data, error, response } = await client.POST('/v1/jobs', { body: request, ...init })
      if (!data) return fail(response, error, 'submitting the job failed')
      return data
    },

    async getJob(id, init = {}) {
      const { data, error, response } = await client.GET('/v1/jobs/{id}', {
        params: { path: { id } },
        ...init,
      })
      if (!data) return fail(response, error, `reading job ${id} failed`)
      return data
    },

    async *followJob(id, follow = {}) {
      let last = follow.after ?? -1
      let failures = 0
      const retries = follow.retries ?? 5
      for (;;) {
        const { response, error } = await client.GET('/v1/jobs/{id}/events', {
          params: { path: { id }, header: last >= 0 ? { 'Last-Event-ID': String(last) } : {} },
          parseAs: 'stream',
          ...(follow.signal ? { signal: follow.signal } : {}),
        })
        if (!response.ok || !response.body) return fail(response, error, `following job ${id} failed`)
        try {
          for await (const message of parseSse(response.body)) {
            if (message.event === 'end') return
            if (message.event !== 'message') continue
            if (message.id !== undefined) last = Number(message.id)
            failures = 0
            yield JSON.parse(message.data) as ServiceRunEvent
          }
        } catch (e) {
          if (follow.signal?.aborted) throw e
        }
        // The stream ended without `end`: the connection broke off. Resume after the last id.
        if (++failures > retries)
          throw new ServiceError(0, undefined, `the event stream of job ${id} broke off`)
        await sleep(Math.min(250 * 2 ** failures, 4000), follow.signal)
      }
    },

    async waitForJob(id, init = {}) {
      for (;;) {
        for await (const _event of helpers.followJob(id, init)) {
          // drain: the stream ends when the job does
        }
        const status = await helpers.getJob(id, init)
        if (TERMINAL.has(status.state)) return status
      }
    },

    async downloadVideo(id, index, file, init = {}) {
      const { response, error } = await client.GET('/v1/jobs/{id}/videos/{index}', {
        params: { path: { id, index } },
        parseAs: 'stream',
        ...init,
      })
      if (!response.ok || !response.body) return fail(response, error, `downloading video ${index} failed`)
      const tmp = `${file}.partial`
      try {
        await pipeline(
          Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
          createWriteStream(tmp),
        )
        await rename(tmp, file)
      } catch (e) {
        await rm(tmp, { force: true })
        throw e
      }
      return file
    },
  }
  return Object.assign(client, helpers)
}
