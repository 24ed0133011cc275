import type { IncomingMessage, ServerResponse } from 'node:http'
import { HttpError } from './problem.js'

/** Sends a JSON body (with `Cache-Control: no-store`: job states change). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...headers,
  })
  res.end(text)
}

export function sendProblem(res: ServerResponse, error: HttpError, instance?: string): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const text = JSON.stringify(error.toProblem(instance))
  res.writeHead(error.status, {
    'Content-Type': 'application/problem+json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...error.headers,
  })
  res.end(text)
}

/**
 * Reads a JSON request body of at most `limit` bytes. A larger body is a 413: at once when
 * Content-Length says so, else when the count passes the limit (the rest is read and dropped, so the
 * client gets the answer instead of a reset connection).
 */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (type !== 'application/json' && !type.endsWith('+json')) {
    req.resume()
    throw new HttpError(415, 'unsupported-media-type', 'send the body as application/json')
  }
  const tooLarge = () => {
    req.resume()
    return new HttpError(413, 'body-too-large', `the request body is larger than ${limit} bytes`, {
      headers: { Connection: 'close' },
    })
  }
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) throw tooLarge()

  const chunks: Buffer[] = []
  let size = 0
  let over = false
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) over = true
    if (!over) chunks.push(chunk)
    // a client that keeps sending far past the limit is cut off
    if (size > limit * 16) {
      req.destroy()
      break
    }
  }
  if (over) throw tooLarge()
  const text = Buffer.concat(chunks).toString('utf8')
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new HttpError(400, 'invalid-json', `the body is not valid JSON: ${(e as Error).message}`)
  }
}

/** CORS headers for an allowed Origin (none when CORS is off or the origin is not listed). */
export function corsHeaders(req: IncomingMessage, allowed: readonly string[]): Record<string, string> {
  const origin = req.headers.origin
  if (!origin || allowed.length === 0) return {}
  if (!allowed.includes('*') && !allowed.includes(origin)) return {}
  return {
    'Access-Control-Allow-Origin': origin,
    'Access-Control-Expose-Headers': 'Content-Range, Accept-Ranges, Content-Length, Location, Retry-After',
    Vary: 'Origin',
  }
}

export const PREFLIGHT_HEADERS = {
  'Access-Control-Allow-Methods': 'GET, HEAD, POST, DELETE, OPTIONS',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type, Last-Event-ID, Range',
  'Access-Control-Max-Age': '600',
}
