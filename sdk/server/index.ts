// The HTTP job service (sdk/server/openapi.yaml) and its typed client.
export type { components as ApiComponents, paths as ApiPaths } from './api.gen.js'
export { TOKEN_ENV, type TokenSource } from './auth.js'
export {
  type ClientOptions,
  createClient,
  type FollowOptions,
  type JobRequestBody,
  type JobStatus,
  type Problem,
  parseSse,
  ServiceError,
  type ServiceRunEvent,
  type SseMessage,
  type TttVideoClient,
  type TttVideoClientHelpers,
} from './client/index.js'
export { openapiDocument } from './openapi.js'
export {
  ConfigOverrides as ConfigOverridesSchema,
  JobRequest as JobRequestSchema,
  Segment as SegmentSchema,
} from './schemas.js'
export { createServer, PortInUseError, type ServerOptions, type TttVideoServer } from './server.js'
export { DEMO_BUNDLE } from './validate.js'
