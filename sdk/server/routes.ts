import type { IncomingMessage, ServerResponse } from 'node:http'
import { doctor } from '../python/doctor.js'
import { listPresets } from '../runs/presets.js'
import type { components } from './api.gen.js'
import { readJsonBody, sendJson } from './http.js'
import { isJobId } from './ids.js'
import type { Derived, VideoFiles } from './media.js'
import { sendFile } from './media.js'
import { openapiDocument } from './openapi.js'
import { HttpError, notFound } from './problem.js'
import type { JobState } from './progress.js'
import type { JobService } from './service.js'
import { lastEventId, streamEvents } from './sse.js'
import { DEMO_BUNDLE } from './validate.js'

type Schemas = components['schemas']

export interface RouteContext {
  req: IncomingMessage
  res: ServerResponse
  /** Decoded path parameters, already checked (`id` is a job id, `index` a whole number). */
  params: { id: string; index: number }
  query: URLSearchParams
  /** CORS headers for this request (empty when CORS is off). */
  cors: Record<string, string>
}

export interface RouteDeps {
  service: JobService
  videos: VideoFiles
  bundles: Readonly<Record<string, string>>
  defaultBundle: string
  version: string
  startedAt: number
  maxBodyBytes: number
  heartbeatMs: number
  venvDir: string | undefined
  /** Registers an open event stream so that close() can end it; returns the unregister function. */
  trackStream: (close: () => void) => () => void
}

type Handler = (ctx: RouteContext) => Promise<void> | void

interface Route {
  pattern: RegExp
  methods: Partial<Record<string, Handler>>
}

const JOB_STATES: readonly JobState[] = [
  'queued',
  'running',
  'succeeded',
  'failed',
  'cancelled',
  'interrupted',
]

/** The routes of the API. Path parameters are matched on the raw path, then decoded and checked. */
export function routes(deps: RouteDeps): Route[] {
  const { service } = deps
  const json = (ctx: RouteContext, status: number, body: unknown, headers: Record<string, string> = {}) =>
    sendJson(ctx.res, status, body, { ...ctx.cors, ...headers })

  const derived =
    (kind: Derived): Handler =>
    async (ctx) => {
      const job = service.get(ctx.params.id)
      const file = await deps.videos.derived(kind, job.id, ctx.params.index, job.record.videos_total)
      await sendFile(ctx.req, ctx.res, file, deps.videos.contentType(kind), ctx.cors)
    }
  const video: Handler = async (ctx) => {
    const job = service.get(ctx.params.id)
    const file = deps.videos.video(job.id, ctx.params.index, job.record.videos_total)
    await sendFile(ctx.req, ctx.res, file, deps.videos.contentType('video'), ctx.cors)
  }

  return [
    { pattern: /^\/openapi\.json$/, methods: { GET: (ctx) => json(ctx, 200, openapiDocument) } },
    {
      pattern: /^\/v1\/health$/,
      methods: {
        GET: (ctx) =>
          json(ctx, 200, {
            status: 'ok',
            version: deps.version,
            uptime_seconds: Math.round((Date.now() - deps.startedAt) / 100) / 10,
            concurrency: service.concurrency,
            jobs: service.counts(),
          } satisfies Schemas['Health']),
      },
    },
    {
      pattern: /^\/v1\/doctor$/,
      methods: {
        GET: async (ctx) => {
          const report = await doctor(deps.venvDir !== undefined ? { venvDir: deps.venvDir } : {})
          json(ctx, 200, report satisfies Omit<Schemas['DoctorReport'], 'python'>)
        },
      },
    },
    {
      pattern: /^\/v1\/presets$/,
      methods: { GET: (ctx) => json(ctx, 200, { presets: listPresets() } satisfies Schemas['PresetList']) },
    },
    {
      pattern: /^\/v1\/bundles$/,
      methods: {
        GET: (ctx) =>
          json(ctx, 200, {
            default: deps.defaultBundle,
            bundles: Object.entries(deps.bundles).map(([name, path]) => ({
              name,
              demo: path === DEMO_BUNDLE,
            })),
          } satisfies Schemas['BundleList']),
      },
    },
    {
      pattern: /^\/v1\/jobs$/,
      methods: {
        POST: async (ctx) => {
          const body = await readJsonBody(ctx.req, deps.maxBodyBytes)
          const job = await service.submit(body)
          json(ctx, 202, job.toJson() satisfies Schemas['Job'], { Location: `/v1/jobs/${job.id}` })
        },
        GET: (ctx) => {
          const state = ctx.query.get('state')
          if (state !== null && !(JOB_STATES as string[]).includes(state))
            throw new HttpError(400, 'bad-query', `state must be one of ${JOB_STATES.join(', ')}`)
          const limitText = ctx.query.get('limit')
          const limit = limitText === null ? 100 : Number(limitText)
          if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
            throw new HttpError(400, 'bad-query', 'limit must be a whole number from 1 to 1000')
          const jobs = service.list((state ?? undefined) as JobState | undefined, limit)
          json(ctx, 200, { jobs: jobs.map((j) => j.toJson()) } satisfies Schemas['JobList'])
        },
      },
    },
    {
      pattern: /^\/v1\/jobs\/([^/]+)$/,
      methods: { GET: (ctx) => json(ctx, 200, service.get(ctx.params.id).toJson() satisfies Schemas['Job']) },
    },
    {
      pattern: /^\/v1\/jobs\/([^/]+)\/cancel$/,
      methods: { POST: (ctx) => json(ctx, 202, service.cancel(ctx.params.id).toJson()) },
    },
    {
      pattern: /^\/v1\/jobs\/([^/]+)\/events$/,
      methods: {
        GET: (ctx) => {
          const job = service.get(ctx.params.id)
          streamEvents(ctx.req, ctx.res, job, lastEventId(ctx.req), {
            heartbeatMs: deps.heartbeatMs,
            headers: ctx.cors,
            onClose: deps.trackStream,
          })
        },
      },
    },
    { pattern: /^\/v1\/jobs\/([^/]+)\/videos\/([^/]+)$/, methods: { GET: video, HEAD: video } },
    { pattern: /^\/v1\/jobs\/([^/]+)\/videos\/([^/]+)\/preview\.gif$/, methods: { GET: derived('preview') } },
    { pattern: /^\/v1\/jobs\/([^/]+)\/videos\/([^/]+)\/poster\.png$/, methods: { GET: derived('poster') } },
    {
      pattern: /^\/v1\/jobs\/([^/]+)\/videos\/([^/]+)\/subtitles\.vtt$/,
      methods: { GET: derived('subtitles') },
    },
  ]
}

/** Finds the handler of a request, or throws 404/405. Ids that are not job ids are a 404, like unknown ones. */
export function match(
  table: Route[],
  method: string,
  path: string,
): { handler: Handler; params: RouteContext['params'] } {
  for (const route of table) {
    const m = route.pattern.exec(path)
    if (!m) continue
    let id = ''
    let index = 0
    if (m[1] !== undefined) {
      id = decode(m[1])
      if (!isJobId(id))
        throw notFound(`no job ${JSON.stringify(id)} (job ids look like 20261125-101500-1a2b3c4d)`)
    }
    if (m[2] !== undefined) {
      const text = decode(m[2])
      if (!/^\d{1,6}$/.test(text))
        throw notFound(`no video ${JSON.stringify(text)}; videos are numbered from 0`)
      index = Number(text)
    }
    const handler = route.methods[method] ?? (method === 'HEAD' ? route.methods.GET : undefined)
    if (!handler) {
      throw new HttpError(405, 'method-not-allowed', `${method} is not allowed here`, {
        headers: { Allow: Object.keys(route.methods).join(', ') },
      })
    }
    return { handler, params: { id, index } }
  }
  throw notFound(`no such endpoint: ${path}`)
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    return part
  }
}
