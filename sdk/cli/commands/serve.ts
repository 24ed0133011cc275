import { join } from 'node:path'
import { createServer, DEMO_BUNDLE, PortInUseError, type ServerOptions } from '../../server/index.js'
import { type Command, cancellation, err, type Flags, intFlag, UsageError } from '../flags.js'

// `ttt-video serve`: the HTTP job service (docs/server.md).

/** The flags of `serve`, in the form of node:util parseArgs options. */
const SERVE_FLAGS = {
  host: { type: 'string' },
  port: { type: 'string' },
  token: { type: 'string' },
  bundle: { type: 'string', multiple: true },
  'default-bundle': { type: 'string' },
  'jobs-dir': { type: 'string' },
  concurrency: { type: 'string' },
  'gpu-set': { type: 'string', multiple: true },
  resume: { type: 'boolean' },
  'keep-jobs': { type: 'string' },
  'keep-days': { type: 'string' },
  'cors-origin': { type: 'string', multiple: true },
  'job-nice': { type: 'string' },
  venv: { type: 'string' },
} as const

const SERVE_USAGE =
  'ttt-video serve [--host H] [--port N] [--token T] [--bundle NAME=PATH]... [--default-bundle NAME]\n' +
  '                [--jobs-dir DIR] [--concurrency N | --gpu-set 0,1 ...] [--resume] [--keep-jobs N]\n' +
  '                [--keep-days D] [--cors-origin ORIGIN]... [--job-nice N] [--venv DIR]'

/** `--keep-days D`: a number of days above 0 (fractions allowed). */
function days(value: unknown): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!/^\d+(\.\d+)?$/.test(String(value)) || !(n > 0))
    throw new UsageError(`--keep-days must be a number of days above 0, like 7 or 0.5, got "${value}"`)
  return n
}

/** `--bundle NAME=PATH` flags; PATH `demo` is the shipped demo model (models/demo). */
function bundlesOf(values: string[] | undefined): Record<string, string> | undefined {
  if (!values || values.length === 0) return undefined
  const out: Record<string, string> = {}
  for (const flag of values) {
    const eq = flag.indexOf('=')
    if (eq < 1 || eq === flag.length - 1)
      throw new UsageError(`--bundle must look like NAME=PATH, got "${flag}"`)
    const name = flag.slice(0, eq)
    const path = flag.slice(eq + 1)
    if (name in out) throw new UsageError(`--bundle ${name} is given twice`)
    out[name] = path === 'demo' ? DEMO_BUNDLE : path
  }
  return out
}

/** Parsed flags -> server options (exported for tests). */
export function serveOptions(positionals: string[], values: Flags): ServerOptions {
  if (positionals.length > 0)
    throw new UsageError(`serve takes no positional arguments (got ${positionals.join(' ')})`)
  const port = intFlag(values.port, 'port', 0)
  const concurrency = intFlag(values.concurrency, 'concurrency', 1)
  const jobNice = intFlag(values['job-nice'], 'job-nice', 0)
  const keepJobs = intFlag(values['keep-jobs'], 'keep-jobs', 1)
  const keepDays = days(values['keep-days'])
  const bundles = bundlesOf(values.bundle as string[] | undefined)
  const gpuSets = values['gpu-set'] as string[] | undefined
  const cors = values['cors-origin'] as string[] | undefined
  if (port !== undefined && port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`)
  return {
    ...(values.host ? { host: values.host as string } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(values.token ? { token: values.token as string } : {}),
    ...(bundles ? { bundles } : {}),
    ...(values['default-bundle'] ? { defaultBundle: values['default-bundle'] as string } : {}),
    ...(values['jobs-dir'] ? { jobsDir: values['jobs-dir'] as string } : {}),
    ...(concurrency !== undefined ? { concurrency } : {}),
    ...(gpuSets && gpuSets.length > 0 ? { gpuSets } : {}),
    ...(values.resume === true ? { resume: true } : {}),
    ...(keepJobs !== undefined ? { keepJobs } : {}),
    ...(keepDays !== undefined ? { keepDays } : {}),
    ...(cors && cors.length > 0 ? { corsOrigins: cors } : {}),
    ...(values.venv ? { venvDir: values.venv as string } : {}),
    ...(jobNice !== undefined ? { jobNice } : {}),
  }
}

function announce(server: ReturnType<typeof createServer>, url: string, host: string): void {
  err(
    `ttt-video serve: listening on ${url} (jobs in ${server.jobsDir}); API description at ${url}/openapi.json`,
  )
  const tokenFile = join(server.jobsDir, 'token')
  if (server.tokenSource === 'generated')
    err(`ttt-video serve: generated a token (kept in ${tokenFile}, mode 0600):\n  ${server.token}`)
  else if (server.tokenSource === 'file') err(`ttt-video serve: using the token in ${tokenFile}`)
  else if (server.tokenSource === 'env') err('ttt-video serve: using the token of TTT_VIDEO_TOKEN')
  if (!/^(127\.|::1$|\[::1\]$|localhost$)/.test(host))
    err('ttt-video serve: warning: listening beyond loopback; put TLS (a reverse proxy) in front of it')
}

/** Listens; a port in use is said in terms of the flag that chooses another. */
async function listen(server: ReturnType<typeof createServer>): Promise<string> {
  try {
    return await server.listen()
  } catch (e) {
    if (!(e instanceof PortInUseError)) throw e
    throw new UsageError(
      `port ${e.port} on ${e.host} is already in use (another ttt-video serve?); choose another with --port N (--port 0 picks a free one)`,
    )
  }
}

/**
 * Runs the service until SIGINT, SIGTERM or SIGHUP, or until the process that started it has gone;
 * running jobs are then stopped and marked interrupted.
 */
async function serve(positionals: string[], values: Flags): Promise<number> {
  let server: ReturnType<typeof createServer>
  try {
    server = createServer({
      ...serveOptions(positionals, values),
      onLog: (m) => err(`ttt-video serve: ${m}`),
    })
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message)
    throw e
  }
  const stop = cancellation()
  try {
    announce(server, await listen(server), values.host ? String(values.host) : '127.0.0.1')
    await new Promise<void>((resolve) =>
      stop.signal.addEventListener('abort', () => resolve(), { once: true }),
    )
    err(
      `ttt-video serve: ${String(stop.signal.reason)}: stopping (running jobs are stopped and marked interrupted)`,
    )
    await server.close()
    return 0
  } finally {
    stop.dispose()
  }
}

export const serveCommand: Command = { name: 'serve', usage: SERVE_USAGE, flags: SERVE_FLAGS, run: serve }
