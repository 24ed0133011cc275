import type { IncomingMessage, ServerResponse } from 'node:http'
import type { BridgeUses } from '../bridge-use.js'
import { sendJson } from '../http.js'
import type { VideoFiles } from '../media.js'
import type { JobService } from '../service.js'

export interface RouteContext {
  req: IncomingMessage
  res: ServerResponse
  /** Decoded path parameters, already checked (`id` is a job id, `index` a canonical whole number). */
  params: { id: string; index: number }
  query: URLSearchParams
  /** CORS headers for this request (empty when CORS is off). */
  cors: Record<string, string>
}

/** What the handlers use. */
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
  bridge: BridgeUses
  /** Registers an open event stream so that close() can end it; returns the unregister function. */
  trackStream: (close: () => void) => () => void
}

export type Handler = (ctx: RouteContext) => Promise<void> | void

/** A path (matched on the raw path; groups 1 and 2 are the job id and the video index) and its methods. */
export interface Route {
  pattern: RegExp
  methods: Partial<Record<string, Handler>>
}

/** Sends a JSON body with the request's CORS headers. */
export function json(ctx: RouteContext, status: number, body: unknown, headers: Record<string, string> = {}) {
  sendJson(ctx.res, status, body, { ...ctx.cors, ...headers })
}
