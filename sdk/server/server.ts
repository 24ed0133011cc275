import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { packageRoot } from '../python/paths.js'
import { resolveToken, saveToken, type TokenSource } from './auth.js'
import { BridgeUses } from './bridge-use.js'
import { dispatcher } from './dispatch.js'
import { VideoFiles } from './media.js'
import { type ResolvedServerOptions, resolveServerOptions, type ServerOptions } from './options.js'
import { routes } from './routes/index.js'
import { JobService } from './service.js'

export type { ServerOptions } from './options.js'

export interface TttVideoServer {
  /** `http://host:port` once listening. */
  readonly url: string
  readonly token: string
  /**
   * Where the token came from: given, read from the environment, read from <jobsDir>/token, or
   * generated (then written to <jobsDir>/token once `listen()` succeeds).
   */
  readonly tokenSource: TokenSource
  readonly jobsDir: string
  /** Loads the jobs on disk, applies the retention, starts the queue and listens; resolves to the URL. */
  listen(): Promise<string>
  /** Stops listening, ends event streams, stops running jobs (they become `interrupted`). */
  close(): Promise<void>
}

/** A port that cannot be bound, said in the terms of the one who chose it. */
export class PortInUseError extends Error {
  readonly port: number
  readonly host: string
  constructor(host: string, port: number, cause: unknown) {
    super(
      `port ${port} on ${host} is already in use (another ttt-video serve?); choose another port: --port N for ttt-video serve, the port option of createServer (0 picks a free one)`,
      { cause },
    )
    this.name = 'PortInUseError'
    this.host = host
    this.port = port
  }
}

function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string })
    .version
}

function bind(http: Server, host: string, port: number): Promise<string> {
  return new Promise((done, fail) => {
    const onError = (e: NodeJS.ErrnoException) =>
      fail(e.code === 'EADDRINUSE' ? new PortInUseError(host, port, e) : e)
    http.once('error', onError)
    http.listen(port, host, () => {
      http.off('error', onError)
      const address = http.address() as AddressInfo
      const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
      done(`http://${shown}:${address.port}`)
    })
  })
}

/** The job service and the route table of a server, with the set of open event streams. */
function assemble(o: ResolvedServerOptions) {
  const bridge = new BridgeUses()
  const service = new JobService(o)
  const streams = new Set<() => void>()
  const table = routes({
    ...o,
    service,
    videos: new VideoFiles(service.store),
    version: packageVersion(),
    startedAt: Date.now(),
    bridge,
    trackStream: (close) => {
      streams.add(close)
      return () => streams.delete(close)
    },
  })
  return { bridge, service, streams, table }
}

/** The HTTP job service (sdk/server/openapi.yaml). Nothing starts, and nothing is written, until `listen()`. */
export function createServer(options: ServerOptions = {}): TttVideoServer {
  const o = resolveServerOptions(options)
  const { token, source: tokenSource } = resolveToken(o.jobsDir, options.token, options.env ?? process.env)
  const { bridge, service, streams, table } = assemble(o)
  const http = createHttpServer(dispatcher({ table, token, cors: o.cors, onLog: o.onLog }))
  let url = ''
  let listening = false

  const listen = async () => {
    if (listening) return url
    service.store.lock()
    try {
      service.load()
      url = await bind(http, o.host, o.port)
      if (tokenSource === 'generated') saveToken(o.jobsDir, token)
    } catch (e) {
      if (http.listening) await new Promise((done) => http.close(done))
      service.store.unlock()
      throw e
    }
    service.start()
    listening = true
    return url
  }
  const close = async () => {
    const closed = new Promise<void>((done) => http.close(() => done()))
    for (const end of [...streams]) end()
    await service.close()
    await bridge.close()
    http.closeAllConnections()
    if (listening) await closed
    listening = false
    service.store.unlock()
  }
  return {
    get url() {
      return url
    },
    token,
    tokenSource,
    jobsDir: o.jobsDir,
    listen,
    close,
  }
}
