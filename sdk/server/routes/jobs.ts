import type { components } from '../api.gen.js'
import { readJsonBody } from '../http.js'
import { HttpError } from '../problem.js'
import { JOB_STATES, type JobState } from '../progress.js'
import { lastEventId, streamEvents } from '../sse.js'
import { runtimeStatus } from './service.js'
import { type Handler, json, type Route, type RouteDeps } from './types.js'

// The routes of jobs: submit, list, read, cancel, delete, follow.

type Schemas = components['schemas']

/** `?state=&limit=` of the job list. */
function listQuery(query: URLSearchParams): { state: JobState | undefined; limit: number } {
  const state = query.get('state')
  if (state !== null && !(JOB_STATES as readonly string[]).includes(state))
    throw new HttpError(400, 'bad-query', `state must be one of ${JOB_STATES.join(', ')}`)
  const limitText = query.get('limit')
  const limit = limitText === null ? 100 : Number(limitText)
  if (!/^\d+$/.test(limitText ?? '100') || limit < 1 || limit > 1000)
    throw new HttpError(400, 'bad-query', 'limit must be a whole number from 1 to 1000')
  return { state: (state ?? undefined) as JobState | undefined, limit }
}

export function jobRoutes(deps: RouteDeps): Route[] {
  const { service } = deps
  const submit: Handler = async (ctx) => {
    const runtime = runtimeStatus(deps.venvDir)
    if (!runtime.ready)
      throw new HttpError(503, 'runtime-unavailable', `${runtime.problem}: run \`${runtime.fix}\``)
    const body = await readJsonBody(ctx.req, deps.maxBodyBytes)
    const job = await service.submit(body)
    json(ctx, 202, job.toJson() satisfies Schemas['Job'], { Location: `/v1/jobs/${job.id}` })
  }
  const list: Handler = (ctx) => {
    const { state, limit } = listQuery(ctx.query)
    json(ctx, 200, { jobs: service.list(state, limit).map((j) => j.toJson()) } satisfies Schemas['JobList'])
  }
  const remove: Handler = (ctx) => {
    service.delete(ctx.params.id)
    ctx.res.writeHead(204, { ...ctx.cors, 'Cache-Control': 'no-store' })
    ctx.res.end()
  }
  const events: Handler = (ctx) => {
    const job = service.get(ctx.params.id)
    streamEvents(ctx.req, ctx.res, job, lastEventId(ctx.req), {
      heartbeatMs: deps.heartbeatMs,
      headers: ctx.cors,
      onClose: deps.trackStream,
    })
  }
  return [
    { pattern: /^\/v1\/jobs$/, methods: { POST: submit, GET: list } },
    {
      pattern: /^\/v1\/jobs\/([^/]+)$/,
      methods: { GET: (ctx) => json(ctx, 200, service.get(ctx.params.id).toJson()), DELETE: remove },
    },
    {
      pattern: /^\/v1\/jobs\/([^/]+)\/cancel$/,
      methods: { POST: (ctx) => json(ctx, 202, service.cancel(ctx.params.id).toJson()) },
    },
    { pattern: /^\/v1\/jobs\/([^/]+)\/events$/, methods: { GET: events } },
  ]
}
