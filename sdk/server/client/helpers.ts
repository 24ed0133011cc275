import { createWriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import { parseSse } from './sse.js'
import {
  type Api,
  type FollowOptions,
  type JobRequestBody,
  type JobStatus,
  type Problem,
  ServiceError,
  type ServiceRunEvent,
} from './types.js'

// The helpers of the client, over its typed openapi-fetch calls.

type Init = { signal?: AbortSignal }

const TERMINAL = new Set<JobStatus['state']>(['succeeded', 'failed', 'cancelled', 'interrupted'])

function fail(response: Response, error: unknown, what: string): never {
  const problem = error && typeof error === 'object' && 'status' in error ? (error as Problem) : undefined
  throw new ServiceError(response.status, problem, what)
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

export async function submitJob(api: Api, request: JobRequestBody, init: Init = {}): Promise<JobStatus> {
  const { data, error, response } = await api.POST('/v1/jobs', { body: request, ...init })
  return data ?? fail(response, error, 'submitting the job failed')
}

export async function getJob(api: Api, id: string, init: Init = {}): Promise<JobStatus> {
  const { data, error, response } = await api.GET('/v1/jobs/{id}', { params: { path: { id } }, ...init })
  return data ?? fail(response, error, `reading job ${id} failed`)
}

export async function deleteJob(api: Api, id: string, init: Init = {}): Promise<void> {
  const { error, response } = await api.DELETE('/v1/jobs/{id}', { params: { path: { id } }, ...init })
  if (!response.ok) fail(response, error, `deleting job ${id} failed`)
}

/** Connects to the job's event stream, after event `after` (-1: from the first). */
async function connect(api: Api, id: string, after: number, signal: AbortSignal | undefined) {
  const { response, error } = await api.GET('/v1/jobs/{id}/events', {
    params: { path: { id }, header: after >= 0 ? { 'Last-Event-ID': String(after) } : {} },
    parseAs: 'stream',
    ...(signal ? { signal } : {}),
  })
  if (!response.ok || !response.body) return fail(response, error, `following job ${id} failed`)
  return response.body
}

export async function* followJob(api: Api, id: string, follow: FollowOptions = {}) {
  let last = follow.after ?? -1
  let failures = 0
  const retries = follow.retries ?? 5
  for (;;) {
    const body = await connect(api, id, last, follow.signal)
    try {
      for await (const message of parseSse(body)) {
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
    if (++failures > retries) throw new ServiceError(0, undefined, `the event stream of job ${id} broke off`)
    await sleep(Math.min(250 * 2 ** failures, 4000), follow.signal)
  }
}

export async function waitForJob(api: Api, id: string, init: Init = {}): Promise<JobStatus> {
  for (;;) {
    for await (const _event of followJob(api, id, init)) {
      // drain: the stream ends when the job does
    }
    const status = await getJob(api, id, init)
    if (TERMINAL.has(status.state)) return status
  }
}

export async function downloadVideo(api: Api, id: string, index: number, file: string, init: Init = {}) {
  const { response, error } = await api.GET('/v1/jobs/{id}/videos/{index}', {
    params: { path: { id, index } },
    parseAs: 'stream',
    ...init,
  })
  if (!response.ok || !response.body) return fail(response, error, `downloading video ${index} failed`)
  const tmp = `${file}.partial`
  try {
    await pipeline(Readable.fromWeb(response.body as WebReadableStream<Uint8Array>), createWriteStream(tmp))
    await rename(tmp, file)
  } catch (e) {
    await rm(tmp, { force: true })
    throw e
  }
  return file
}
