import { isJobId } from '../ids.js'
import { HttpError } from '../problem.js'
import { jobRoutes } from './jobs.js'
import { serviceRoutes } from './service.js'
import type { Handler, Route, RouteContext, RouteDeps } from './types.js'
import { videoRoutes } from './videos.js'

export type { Route, RouteContext, RouteDeps } from './types.js'

/** The routes of the API. Path parameters are matched on the raw path, then decoded and checked. */
export function routes(deps: RouteDeps): Route[] {
  return [...serviceRoutes(deps), ...jobRoutes(deps), ...videoRoutes(deps)]
}

/** A video index as the API writes it: `0`, `1`, `12` (never `00`, `+1`, `1e0`), at most 6 digits. */
const VIDEO_INDEX = /^(0|[1-9]\d{0,5})$/

function decode(part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    return part
  }
}

/** The checked path parameters of a matched route; what is not a job id or a video index is a 404. */
function paramsOf(m: RegExpExecArray): RouteContext['params'] {
  let id = ''
  let index = 0
  if (m[1] !== undefined) {
    id = decode(m[1])
    if (!isJobId(id))
      throw new HttpError(
        404,
        'job-not-found',
        `no job ${JSON.stringify(id)} (job ids look like 20261125-101500-1a2b3c4d)`,
      )
  }
  if (m[2] !== undefined) {
    const text = decode(m[2])
    if (!VIDEO_INDEX.test(text))
      throw new HttpError(
        404,
        'video-not-found',
        `no video ${JSON.stringify(text)}; videos are numbered 0, 1, 2, ... (no leading zeros or signs)`,
      )
    index = Number(text)
  }
  return { id, index }
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
    const params = paramsOf(m)
    const handler = route.methods[method] ?? (method === 'HEAD' ? route.methods.GET : undefined)
    if (!handler) {
      throw new HttpError(405, 'method-not-allowed', `${method} is not allowed here`, {
        headers: { Allow: Object.keys(route.methods).join(', ') },
      })
    }
    return { handler, params }
  }
  throw new HttpError(404, 'not-found', `no such endpoint: ${path}`)
}
