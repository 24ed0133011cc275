import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Job } from './job.js'
import { HttpError } from './problem.js'

/** The index after which a stream resumes: the Last-Event-ID header, else -1 (from the start). */
export function lastEventId(req: IncomingMessage): number {
  const header = req.headers['last-event-id']
  if (header === undefined || header === '') return -1
  if (typeof header !== 'string' || !/^\d{1,9}$/.test(header))
    throw new HttpError(400, 'bad-last-event-id', 'Last-Event-ID must be an event id (a whole number)')
  return Number(header)
}

/**
 * Streams a job's events as Server-Sent Events: the past ones first (after `after`), then each new
 * one as it comes, then an `end` message with the job's status once it has ended. Every client gets
 * the same ids (the events' indexes), so a reconnect with Last-Event-ID misses nothing.
 */
export function streamEvents(
  req: IncomingMessage,
  res: ServerResponse,
  job: Job,
  after: number,
  options: {
    heartbeatMs: number
    headers: Record<string, string>
    onClose: (close: () => void) => () => void
  },
): void {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no',
    ...options.headers,
  })
  res.write('retry: 2000\n\n')
  let next = after + 1
  let closed = false
  const close = () => {
    if (closed) return
    closed = true
    clearInterval(heartbeat)
    unsubscribe()
    forget()
    res.end()
  }
  const flush = () => {
    if (closed) return
    const events = job.allEvents()
    let chunk = ''
    while (next < events.length) {
      chunk += `id: ${next}\ndata: ${JSON.stringify(events[next])}\n\n`
      next++
    }
    if (job.ended) chunk += `event: end\ndata: ${JSON.stringify(job.toJson())}\n\n`
    if (chunk) res.write(chunk)
    if (job.ended) close()
  }
  const heartbeat = setInterval(() => res.write(': ping\n\n'), options.heartbeatMs)
  heartbeat.unref()
  const unsubscribe = job.subscribe(flush)
  const forget = options.onClose(close)
  req.on('close', close)
  res.on('error', close)
  flush()
}
