import { createReadStream, existsSync, readFileSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { FfmpegNotFoundError, poster, preview, subtitles } from '../video/index.js'
import { HttpError } from './problem.js'
import type { JobStore } from './store.js'

export type Derived = 'preview' | 'poster' | 'subtitles'

const CONTENT_TYPES: Record<Derived | 'video', string> = {
  video: 'video/mp4',
  preview: 'image/gif',
  poster: 'image/png',
  subtitles: 'text/vtt; charset=utf-8',
}

/** A single `bytes=` range of a file of `size` bytes: [start, end] inclusive; null to send it all. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
  if (!header) return null
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m) return null // several ranges, or another unit: RFC 9110 lets a server ignore Range
  const [, first, last] = m as unknown as [string, string, string]
  let start: number
  let end: number
  if (first === '') {
    if (last === '') return null
    const suffix = Number(last)
    if (suffix === 0) throw unsatisfiable(size)
    start = Math.max(0, size - suffix)
    end = size - 1
  } else {
    start = Number(first)
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1)
    if (last !== '' && Number(last) < start) return null // invalid: ignore
  }
  if (start >= size) throw unsatisfiable(size)
  return { start, end }
}

function unsatisfiable(size: number): HttpError {
  return new HttpError(416, 'range-not-satisfiable', `the file has ${size} bytes`, {
    headers: { 'Content-Range': `bytes */${size}` },
  })
}

/** Sends a file with ETag and Last-Modified, honouring a single byte range (206) when asked to. */
export async function sendFile(
  req: IncomingMessage,
  res: ServerResponse,
  file: string,
  contentType: string,
  extraHeaders: Record<string, string> = {},
): Promise<void> {
  const info = await stat(file)
  const size = info.size
  const headers: Record<string, string | number> = {
    'Content-Type': contentType,
    'Accept-Ranges': 'bytes',
    ETag: `"${size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`,
    'Last-Modified': info.mtime.toUTCString(),
    'Cache-Control': 'private, max-age=3600',
    ...extraHeaders,
  }
  const ifRange = req.headers['if-range']
  const range = ifRange && ifRange !== headers.ETag ? null : parseRange(req.headers.range, size)
  let status = 200
  let start = 0
  let end = size - 1
  if (range) {
    status = 206
    ;({ start, end } = range)
    headers['Content-Range'] = `bytes ${start}-${end}/${size}`
  }
  headers['Content-Length'] = size === 0 ? 0 : end - start + 1
  res.writeHead(status, headers)
  if (req.method === 'HEAD' || size === 0) {
    res.end()
    return
  }
  await pipeline(createReadStream(file, { start, end }), res).catch(() => {
    // the client went away mid-transfer
  })
}

/** At most 320 pixels wide, and never wider than the video (meta.json gives its width). */
function previewWidth(folder: string): number {
  try {
    const { width } = JSON.parse(readFileSync(join(folder, 'meta.json'), 'utf8')) as { width?: unknown }
    if (typeof width === 'number' && Number.isInteger(width) && width > 0) return Math.min(320, width)
  } catch {}
  return 320
}

/**
 * Paths of a complete video's files. A video is complete when its folder has meta.json (written last),
 * so a half-written video is never served.
 */
export class VideoFiles {
  private readonly inFlight = new Map<string, Promise<string>>()

  constructor(private readonly store: JobStore) {}

  contentType(kind: Derived | 'video'): string {
    return CONTENT_TYPES[kind]
  }

  /** The mp4 of a complete video, or a 404. */
  video(id: string, index: number, videosTotal: number): string {
    const folder = this.store.videoFolder(id, index)
    if (index >= videosTotal || !existsSync(join(folder, 'meta.json')))
      throw new HttpError(404, 'video-not-found', `job ${id} has no finished video ${index}`)
    return join(folder, 'video.mp4')
  }

  /** The preview, poster or subtitles of a complete video: made on first request, then kept. */
  async derived(kind: Derived, id: string, index: number, videosTotal: number): Promise<string> {
    const video = this.video(id, index, videosTotal)
    const folder = this.store.videoFolder(id, index)
    const file = join(folder, { preview: 'preview.gif', poster: 'poster.png', subtitles: 'video.vtt' }[kind])
    if (existsSync(file)) return file
    let making = this.inFlight.get(file)
    if (!making) {
      const make = async () => {
        if (kind === 'preview')
          return preview(video, { format: 'gif', width: previewWidth(folder), out: file })
        if (kind === 'poster') return poster(video, { out: file })
        return (await subtitles(folder, { format: 'vtt', out: file })).path!
      }
      making = make()
        .catch((e: unknown) => {
          if (e instanceof FfmpegNotFoundError)
            throw new HttpError(503, 'ffmpeg-unavailable', 'the server has no ffmpeg to make this file')
          throw e
        })
        .finally(() => this.inFlight.delete(file))
      this.inFlight.set(file, making)
    }
    return making
  }
}
