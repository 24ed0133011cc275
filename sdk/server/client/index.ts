import createFetchClient from 'openapi-fetch'
import type { paths } from '../api.gen.js'
import { deleteJob, downloadVideo, followJob, getJob, submitJob, waitForJob } from './helpers.js'
import type { ClientOptions, TttVideoClient, TttVideoClientHelpers } from './types.js'

export { parseSse, type SseMessage } from './sse.js'
export {
  type ClientOptions,
  type FollowOptions,
  type JobRequestBody,
  type JobStatus,
  type Problem,
  ServiceError,
  type ServiceRunEvent,
  type TttVideoClient,
  type TttVideoClientHelpers,
} from './types.js'

/** A client of the ttt-video job service: `client.GET('/v1/jobs/{id}', ...)` and the helpers. */
export function createClient(options: ClientOptions): TttVideoClient {
  const api = createFetchClient<paths>({
    baseUrl: String(options.baseUrl).replace(/\/+$/, ''),
    headers: { Authorization: `Bearer ${options.token}` },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  })
  const helpers: TttVideoClientHelpers = {
    submitJob: (request, init) => submitJob(api, request, init),
    getJob: (id, init) => getJob(api, id, init),
    followJob: (id, follow) => followJob(api, id, follow),
    waitForJob: (id, init) => waitForJob(api, id, init),
    downloadVideo: (id, index, file, init) => downloadVideo(api, id, index, file, init),
    deleteJob: (id, init) => deleteJob(api, id, init),
  }
  return Object.assign(api, helpers)
}
