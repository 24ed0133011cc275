import type { Derived } from '../media.js'
import { sendFile } from '../media.js'
import type { Handler, Route, RouteDeps } from './types.js'

// The routes of a job's finished videos: the mp4 (with byte ranges), and the files made from it.

export function videoRoutes(deps: RouteDeps): Route[] {
  const { service, videos } = deps
  const video: Handler = async (ctx) => {
    const job = service.get(ctx.params.id)
    const file = videos.video(job.id, ctx.params.index, job.record.videos_total)
    await sendFile(ctx.req, ctx.res, file, videos.contentType('video'), ctx.cors)
  }
  const derived =
    (kind: Derived): Handler =>
    async (ctx) => {
      const job = service.get(ctx.params.id)
      const file = await videos.derived(kind, job.id, ctx.params.index, job.record.videos_total)
      await sendFile(ctx.req, ctx.res, file, videos.contentType(kind), ctx.cors)
    }
  const base = '^\\/v1\\/jobs\\/([^/]+)\\/videos\\/([^/]+)'
  return [
    { pattern: new RegExp(`${base}$`), methods: { GET: video, HEAD: video } },
    { pattern: new RegExp(`${base}\\/preview\\.gif$`), methods: { GET: derived('preview') } },
    { pattern: new RegExp(`${base}\\/poster\\.png$`), methods: { GET: derived('poster') } },
    { pattern: new RegExp(`${base}\\/subtitles\\.vtt$`), methods: { GET: derived('subtitles') } },
  ]
}
