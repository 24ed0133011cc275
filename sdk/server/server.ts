import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import { packageRoot } from '../python/paths.js'
import { bearerToken, resolveToken, type TokenSource, tokensEqual } from './auth.js'
import { corsHeaders, PREFLIGHT_HEADERS, sendProblem } from './http.js'
import { VideoFiles } from './media.js'
import { HttpError } from './problem.js'
import { match, routes } from './routes.js'
import { BUNDLE_NAME_PATTERN } from './schemas.js'
import { JobService } from './service.js'
import { DEMO_BUNDLE, type Slot } from './validate.js'

export interface ServerOptions {
  /** Address to bind; default 127.0.0.1 (loopback only). */
  host?: string
  /** Default 8470; 0 picks a free port (see `url` after `listen()`). */
  port?: number
  /** The bearer token; default $TTT_VIDEO_TOKEN, else the one generated on the first start (<jobsDir>/token). */
  token?: string
  /** Where jobs live, one folder each; default ./ttt-video-jobs. */
  jobsDir?: string
  /**
   * Model bundles by name (a request names one); values are bundle folders, or `DEMO_BUNDLE` for the
   * tiny random-weight demo model. Default `{ demo: DEMO_BUNDLE }`.
   */
  bundles?: Record<string, string>
  /** The bundle of requests that name none; default the first of `bundles`. */
  defaultBundle?: string
  /** GPU sets, one job at a time each (values of CUDA_VISIBLE_DEVICES, e.g. ["0,1", "2,3"]). */
  gpuSets?: string[]
  /** Jobs that run at once when no GPU sets are given (CPU processes); default 1. */
  concurrency?: number
  /** Run again the jobs a stopped server left running; default false (they are marked `interrupted`). */
  resume?: boolean
  /** Origins allowed by CORS (`*` for any); default none: CORS off. */
  corsOrigins?: string[]
  /** Largest request body in bytes; default 1 MiB. */
  maxBodyBytes?: number
  /** Most videos in one job; default 16. */
  maxVideosPerJob?: number
  /** Longest prompt (text or neg_text) in characters; default 2000. */
  maxTextChars?: number
  /** Most jobs waiting; default 100. */
  maxQueuedJobs?: number
  /**
   * Niceness of the job processes, 0 to 19; default 0 (the server's priority). A positive value lets the
   * HTTP side answer first on a CPU that Python saturates, at the cost of slower jobs whenever anything
   * else wants the CPU (docs/benchmarks.md).
   */
  jobNice?: number
  /** Milliseconds between keep-alive comments on idle event streams; default 15000. */
  heartbeatMs?: number
  /** The managed Python environment (default: $TTT_VIDEO_VENV or <package>/.venv). */
  venvDir?: string
  /** Things an operator should know (skipped job folders, failed jobs, orphans stopped). */
  onLog?: (message: string) => void
  /** Where $TTT_VIDEO_TOKEN is read from; default process.env. */
  env?: NodeJS.ProcessEnv
}

export interface TttVideoServer {
  /** `http://host:port` once listening. */
  readonly url: string
  readonly token: string
  /** Whether the token was given, read from the environment, read from <jobsDir>/token, or generated now. */
  readonly tokenSource: TokenSource
  readonly jobsDir: string
  /** Loads the jobs on disk, starts the queue and listens; resolves to the URL. */
  listen(): Promise<string>
  /** Stops listening, ends event streams, stops running jobs (they become `interrupted`). */
  close(): Promise<void>
}

function positiveInt(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 1)
    throw new RangeError(`${name} must be a positive integer, got ${value}`)
  return value
}

function niceness(value: number | undefined): number {
  if (value === undefined) return 0
  if (!Number.isInteger(value) || value < 0 || value > 19)
    throw new RangeError(`jobNice must be a whole number from 0 to 19, got ${value}`)
  return value
}

function slotsOf(options: ServerOptions): Slot[] {
  if (options.gpuSets && options.gpuSets.length > 0) {
    const sizes = options.gpuSets.map((set) => {
      if (!/^\d+(,\d+)*$/.test(set))
        throw new RangeError(`a GPU set is a list of device numbers like "0,1", got "${set}"`)
      return set.split(',').length
    })
    if (new Set(sizes).size > 1) throw new RangeError('every GPU set must have the same number of GPUs')
    if (options.concurrency !== undefined && options.concurrency !== options.gpuSets.length)
      throw new RangeError('concurrency and gpuSets disagree: one job runs at a time per GPU set')
    return options.gpuSets.map((set, index) => ({
      index,
      gpus: sizes[index]!,
      env: { CUDA_VISIBLE_DEVICES: set },
    }))
  }
  const n = positiveInt(options.concurrency, 'concurrency', 1)
  return Array.from({ length: n }, (_, index) => ({ index, gpus: undefined, env: {} }))
}

/** The HTTP job service (sdk/server/openapi.yaml). Nothing starts until `listen()`. */
export function createServer(options: ServerOptions = {}): TttVideoServer {
  const host = options.host ?? '127.0.0.1'
  const port = options.port ?? 8470
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`bad port ${port}`)
  const jobsDir = resolve(options.jobsDir ?? 'ttt-video-jobs')
  const bundles =
    options.bundles && Object.keys(options.bundles).length > 0 ? options.bundles : { demo: DEMO_BUNDLE }
  for (const [name, path] of Object.entries(bundles)) {
    if (!BUNDLE_NAME_PATTERN.test(name))
      throw new RangeError(`bundle name "${name}" must be letters, digits, '.', '_' or '-' (at most 64)`)
    if (path !== DEMO_BUNDLE && path.trim() === '') throw new RangeError(`bundle "${name}" has no folder`)
  }
  const bundleMap = Object.fromEntries(
    Object.entries(bundles).map(([name, path]) => [name, path === DEMO_BUNDLE ? path : resolve(path)]),
  )
  const defaultBundle = options.defaultBundle ?? Object.keys(bundleMap)[0]!
  if (!(defaultBundle in bundleMap))
    throw new RangeError(`the default bundle "${defaultBundle}" is not configured`)
  const onLog = options.onLog ?? (() => {})

  const service = new JobService({
    jobsDir,
    bundles: bundleMap,
    defaultBundle,
    slots: slotsOf(options),
    limits: {
      maxVideos: positiveInt(options.maxVideosPerJob, 'maxVideosPerJob', 16),
      maxTextChars: positiveInt(options.maxTextChars, 'maxTextChars', 2000),
    },
    maxQueued: positiveInt(options.maxQueuedJobs, 'maxQueuedJobs', 100),
    resume: options.resume === true,
    venvDir: options.venvDir,
    jobNice: niceness(options.jobNice),
    onLog,
  })
  const { token, source: tokenSource } = resolveToken(jobsDir, options.token, options.env ?? process.env)
  const cors = options.corsOrigins ?? []
  const streams = new Set<() => void>()
  const version = (
    JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }
  ).version
  const table = routes({
    service,
    videos: new VideoFiles(service.store),
    bundles: bundleMap,
    defaultBundle,
    version,
    startedAt: Date.now(),
    maxBodyBytes: positiveInt(options.maxBodyBytes, 'maxBodyBytes', 1024 * 1024),
    heartbeatMs: positiveInt(options.heartbeatMs, 'heartbeatMs', 15_000),
    venvDir: options.venvDir,
    trackStream: (close) => {
      streams.add(close)
      return () => streams.delete(close)
    },
  })

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const rawUrl = req.url ?? '/'
    const q = rawUrl.indexOf('?')
    const path = q < 0 ? rawUrl : rawUrl.slice(0, q)
    const headers = corsHeaders(req, cors)
    try {
      if (req.method === 'OPTIONS' && headers['Access-Control-Allow-Origin']) {
        res.writeHead(204, { ...headers, ...PREFLIGHT_HEADERS })
        res.end()
        return
      }
      const given = bearerToken(req.headers.authorization)
      if (given === undefined || !tokensEqual(given, token)) {
        req.resume()
        throw new HttpError(
          401,
          'unauthorized',
          given === undefined ? 'send Authorization: Bearer <token>' : 'the token is wrong',
          { headers: { 'WWW-Authenticate': 'Bearer realm="ttt-video"' } },
        )
      }
      const { handler, params } = match(table, req.method ?? 'GET', path)
      await handler({
        req,
        res,
        params,
        query: new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1)),
        cors: headers,
      })
    } catch (e) {
      const error =
        e instanceof HttpError
          ? e
          : new HttpError(500, 'internal', 'the server failed to answer; see its log', {})
      if (!(e instanceof HttpError)) onLog(`${req.method} ${path} failed: ${(e as Error).stack ?? e}`)
      error.headers['Cache-Control'] = 'no-store'
      Object.assign(error.headers, headers)
      sendProblem(res, error, path)
    }
  }

  const http = createHttpServer((req, res) => {
    void handle(req, res)
  })
  let url = ''
  let listening = false

  return {
    get url() {
      return url
    },
    token,
    tokenSource,
    jobsDir,
    async listen() {
      if (listening) return url
      service.store.lock()
      try {
        service.load()
        await new Promise<void>((done, fail) => {
          http.once('error', fail)
          http.listen(port, host, () => {
            http.off('error', fail)
            done()
          })
        })
      } catch (e) {
        await service.close()
        service.store.unlock()
        throw e
      }
      listening = true
      const address = http.address() as AddressInfo
      const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
      url = `http://${shown}:${address.port}`
      return url
    },
    async close() {
      const closed = new Promise<void>((done) => http.close(() => done()))
      for (const end of [...streams]) end()
      await service.close()
      http.closeAllConnections()
      if (listening) await closed
      listening = false
      service.store.unlock()
    },
  }
}
