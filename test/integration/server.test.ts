import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readConfigFile } from '../../sdk/contracts/config/load.js'
import { demoBundle } from '../../sdk/runs/demo.js'
import { newJobId } from '../../sdk/server/ids.js'
import {
  createClient,
  createServer,
  type JobStatus,
  type ServerOptions,
  type ServiceRunEvent,
  type TttVideoClient,
  type TttVideoServer,
} from '../../sdk/server/index.js'
import { probe } from '../../sdk/video/index.js'
import { alive, descendants, ROOT } from '../helpers.js'

// A real server on an ephemeral loopback port, real Python with the shipped demo model: no mocks.
const tmp = mkdtempSync(join(tmpdir(), 'ttt-server-'))
process.env.TTT_VIDEO_CACHE = join(tmp, 'cache')
const jobsDir = join(tmp, 'jobs')
const _CLI = join(ROOT, 'dist', 'cli', 'main.js')
const TOKEN = 'test-token-0123456789abcdef'
const auth = { Authorization: `Bearer ${TOKEN}` }
const fast = { eval: { num_denoising_steps: 2 } }
const slow = { eval: { num_denoising_steps: 200 } }
const oneVideo = [[{ text: 'a red boat on a lake' }]]

interface BadRequest {
  name: string
  method: string
  path: string
  body?: unknown
  status: number
  code?: string
  field?: string
}
const badRequests = readFileSync(join(ROOT, 'test', 'vectors', 'bad-requests.jsonl'), 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '')
  .map((line) => JSON.parse(line) as BadRequest)

let server: TttVideoServer
let client: TttVideoClient
const logs: string[] = []

async function start(extra: ServerOptions = {}): Promise<TttVideoServer> {
  server = createServer({
    port: 0,
    jobsDir,
    token: TOKEN,
    maxBodyBytes: 64 * 1024,
    heartbeatMs: 1000,
    onLog: (m) => logs.push(m),
    ...extra,
  })
  client = createClient({ baseUrl: await server.listen(), token: TOKEN })
  return server
}

async function collect(id: string, after?: number): Promise<ServiceRunEvent[]> {
  const events: ServiceRunEvent[] = []
  for await (const e of client.followJob(id, after === undefined ? {} : { after })) events.push(e)
  return events
}

async function until(id: string, predicate: (e: ServiceRunEvent) => boolean): Promise<void> {
  for await (const e of client.followJob(id)) if (predicate(e)) return
  throw new Error(`job ${id} ended before the awaited event`)
}

/** A raw request, so that the path reaches the server exactly as written (fetch normalises `..`). */
function raw(method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  const url = new URL(server.url)
  const headers = { ...auth, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) }
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, path, method, headers }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        text += c
      })
      res.on('end', () => resolve({ status: res.statusCode!, body: text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

const record = (dir: string, id: string) => JSON.parse(readFileSync(join(dir, id, 'job.json'), 'utf8'))
const kind = (problem: { type?: string } | undefined) => problem?.type?.replace('urn:ttt-video:problem:', '')

/** An ended job folder, as a server writes it, that ended `days` ago. */
function endedJob(dir: string, days: number): string {
  const ended = new Date(Date.now() - days * 86_400_000)
  const id = newJobId(ended)
  mkdirSync(join(dir, id), { recursive: true })
  const at = ended.toISOString()
  const job = { version: 2, id, state: 'succeeded', created_at: at, started_at: at, resumed_at: null }
  const rest = {
    finished_at: at,
    bundle: 'demo',
    preset: null,
    seed: 1,
    videos_total: 1,
    error: null,
    pid: null,
  }
  writeFileSync(join(dir, id, 'job.json'), JSON.stringify({ ...job, ...rest }))
  writeFileSync(
    join(dir, id, 'request.json'),
    JSON.stringify({ storyboards: oneVideo, bundle: 'demo', seed: 1 }),
  )
  return id
}

describe('the HTTP job service', () => {
  beforeAll(async () => {
    await demoBundle() // the shipped demo model the 'demo' bundle runs is there
    await start({ onLog: (m) => logs.push(m) })
  })
  afterAll(async () => {
    await server?.close()
    rmSync(tmp, { recursive: true, force: true })
  })

  it('answers 401 without a token or with a wrong one; health, bundles, presets, the document', async () => {
    const none = await fetch(`${server.url}/v1/health`)
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/)
    expect(none.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    const wrong = await fetch(`${server.url}/openapi.json`, { headers: { Authorization: 'Bearer nope' } })
    expect(wrong.status).toBe(401)
    const other = createClient({ baseUrl: server.url, token: `${TOKEN}x` })
    expect((await other.GET('/v1/jobs')).error?.title).toBe('Unauthorized')
    expect((await fetch(`${server.url}/nothing`)).status).toBe(401) // nothing is told before the token

    const health = await client.GET('/v1/health')
    expect(health.response.status).toBe(200)
    expect(health.data).toMatchObject({ status: 'ok', concurrency: 1, runtime: { ready: true } })
    expect((await client.GET('/openapi.json')).data?.openapi).toBe('3.1.0')
    const bundles = (await client.GET('/v1/bundles')).data
    expect(bundles).toEqual({ default: 'demo', bundles: [{ name: 'demo', demo: true }] })
    expect((await client.GET('/v1/presets')).data?.presets).toContain('tiny/3s')
  })

  it('answers 413 to an oversized body, with or without Content-Length, and 415 to a body not JSON', async () => {
    const big = JSON.stringify({ storyboards: [[{ text: 'x'.repeat(100_000) }]] })
    const post = (body: string | ReadableStream, json = true) =>
      fetch(`${server.url}/v1/jobs`, {
        method: 'POST',
        headers: { ...auth, ...(json ? { 'Content-Type': 'application/json' } : {}) },
        body,
        duplex: 'half',
      } as RequestInit)
    expect((await post(big)).status).toBe(413)
    const chunks = [big.slice(0, 50_000), big.slice(50_000)]
    const stream = new ReadableStream({
      pull(controller) {
        const next = chunks.shift()
        if (next === undefined) controller.close()
        else controller.enqueue(new TextEncoder().encode(next))
      },
    })
    expect((await post(stream)).status).toBe(413)
    expect((await post('x', false)).status).toBe(415)
  })

  it.each(badRequests)('refuses a bad request: $name', async (bad) => {
    const body = bad.body === undefined || typeof bad.body === 'string' ? bad.body : JSON.stringify(bad.body)
    const r = await raw(bad.method, bad.path, body as string | undefined)
    const problem = JSON.parse(r.body) as { type: string; status: number; errors?: { path: string }[] }
    expect([r.status, problem.status]).toEqual([bad.status, bad.status])
    if (bad.code !== undefined) expect(kind(problem)).toBe(bad.code)
    if (bad.field !== undefined) expect(problem.errors?.map((e) => e.path)).toContain(bad.field)
  })

  it('queued nothing for the bad requests; says what is wrong with a path field', async () => {
    expect((await client.GET('/v1/jobs')).data?.jobs).toEqual([])
    const { error } = await client.POST('/v1/jobs', {
      body: { storyboards: oneVideo, overrides: { eval: { output_dir: '/tmp' } as never } },
    })
    expect(error?.errors?.[0]?.message).toMatch(/filesystem path/)
  })

  let finished: JobStatus
  let finishedEvents: ServiceRunEvent[]

  it('runs a job: SSE to the end for two clients, status, the mp4 with Range, preview, poster, subtitles', async () => {
    const job = await client.submitJob({ storyboards: oneVideo, overrides: fast, seed: 7 })
    expect(job.id).toMatch(/^\d{8}-\d{6}-[0-9a-f]{8}$/)
    expect(['queued', 'running']).toContain(job.state)
    expect(job.seed).toBe(7)
    const { data: status } = await client.GET('/v1/jobs/{id}', { params: { path: { id: job.id } } })
    expect(status?.progress.videos_total).toBe(1)
    // @ts-expect-error the path parameter is `id`
    void (() => client.GET('/v1/jobs/{id}', { params: { path: { jobId: job.id } } }))

    const [a, b] = await Promise.all([collect(job.id), collect(job.id)])
    expect(b).toEqual(a)
    expect([a[0]?.type, a.at(-1)?.type]).toEqual(['run.started', 'run.finished'])
    expect(a.filter((e) => e.type === 'step').map((e) => (e.type === 'step' ? e.index : -1))).toEqual([0, 1])
    expect(await collect(job.id, 3)).toEqual(a.slice(4)) // resuming after an id gives exactly the rest

    finished = await client.waitForJob(job.id)
    finishedEvents = a
    expect(finished).toMatchObject({ state: 'succeeded', seed: 7, error: null, resumed_at: null })
    expect(finished.progress).toMatchObject({ phase: 'finished', videos_total: 1, videos_done: 1, step: 2 })
    expect(finished.videos.map((v) => [v.index, v.frames, v.fps])).toEqual([[0, 49, 16]])

    const file = await client.downloadVideo(job.id, 0, join(tmp, 'video.mp4'))
    const info = await probe(file)
    expect([info.frames, info.fps, info.width, info.height, info.codec]).toEqual([49, 16, 96, 64, 'h264'])
    const bytes = readFileSync(file)
    const range = (header: string) =>
      fetch(`${server.url}${finished.videos[0]!.url}`, { headers: { ...auth, Range: header } })
    const part = await range('bytes=0-99')
    expect([part.status, part.headers.get('content-range')]).toEqual([206, `bytes 0-99/${bytes.length}`])
    expect(Buffer.from(await part.arrayBuffer())).toEqual(bytes.subarray(0, 100))
    expect(Buffer.from(await (await range('bytes=-10')).arrayBuffer())).toEqual(
      bytes.subarray(bytes.length - 10),
    )
    const outside = await range(`bytes=${bytes.length}-`)
    expect([outside.status, outside.headers.get('content-range')]).toEqual([416, `bytes */${bytes.length}`])
    expect(kind(JSON.parse((await raw('GET', `/v1/jobs/${job.id}/videos/1`)).body))).toBe('video-not-found')
    expect((await raw('GET', `/v1/jobs/${job.id}/videos/00`)).status).toBe(404)

    for (const [url, type] of [
      [finished.videos[0]!.preview_url, 'image/gif'],
      [finished.videos[0]!.poster_url, 'image/png'],
      [finished.videos[0]!.subtitles_url, 'text/vtt'],
    ] as const) {
      const r = await fetch(`${server.url}${url}`, { headers: auth })
      expect([url, r.status, r.headers.get('content-type')?.split(';')[0]]).toEqual([url, 200, type])
      const body = Buffer.from(await r.arrayBuffer())
      expect(body.length).toBeGreaterThan(10)
      if (type === 'text/vtt') expect(body.toString()).toContain('a red boat on a lake')
    }
    const listed = await client.GET('/v1/jobs', { params: { query: { state: 'succeeded' } } })
    expect(listed.data?.jobs.map((j) => j.id)).toEqual([job.id])
  }, 400_000)

  it('cancels a queued job at once and a running one with its process tree; deletes only ended jobs', async () => {
    const running = await client.submitJob({ storyboards: oneVideo, overrides: slow })
    const queued = await client.submitJob({ storyboards: oneVideo, overrides: fast })
    expect(queued.state).toBe('queued')
    const cancelledQueued = await client.POST('/v1/jobs/{id}/cancel', { params: { path: { id: queued.id } } })
    expect([cancelledQueued.response.status, cancelledQueued.data?.state]).toEqual([202, 'cancelled'])
    expect(await collect(queued.id)).toEqual([]) // the stream ends at once

    await until(running.id, (e) => e.type === 'step')
    const refusal = await client.DELETE('/v1/jobs/{id}', { params: { path: { id: running.id } } })
    expect([refusal.response.status, kind(refusal.error)]).toEqual([409, 'job-not-ended'])
    const pid = record(jobsDir, running.id).pid as number
    const tree = [pid, ...descendants(pid)]
    expect(tree.filter(alive).length).toBeGreaterThan(0)
    const t0 = performance.now()
    const cancel = await client.POST('/v1/jobs/{id}/cancel', { params: { path: { id: running.id } } })
    expect(cancel.response.status).toBe(202)
    expect((await client.waitForJob(running.id)).state).toBe('cancelled')
    expect(performance.now() - t0).toBeLessThan(8000)
    expect(tree.filter(alive)).toEqual([])
    expect(record(jobsDir, running.id).pid).toBeNull()
    const again = await client.POST('/v1/jobs/{id}/cancel', { params: { path: { id: running.id } } })
    expect(again.response.status).toBe(409)

    await client.deleteJob(running.id)
    expect(existsSync(join(jobsDir, running.id))).toBe(false)
    const after = await client.GET('/v1/jobs/{id}', { params: { path: { id: running.id } } })
    expect([after.response.status, kind(after.error)]).toEqual([404, 'job-not-found'])
    expect((await raw('DELETE', `/v1/jobs/${queued.id}`)).status).toBe(204)
  }, 400_000)

  it('a restarted server lists the finished job, marks the interrupted one, and resumes it when asked', async () => {
    const job = await client.submitJob({ storyboards: oneVideo, overrides: fast }) // no seed: the config's
    await until(job.id, (e) => e.type === 'model.loading')
    const pid = record(jobsDir, job.id).pid as number
    const firstStart = record(jobsDir, job.id).started_at as string
    await server.close() // stops the running job: interrupted
    expect(alive(pid)).toBe(false)

    await start()
    const byId = new Map((await client.GET('/v1/jobs')).data!.jobs.map((j) => [j.id, j]))
    expect(byId.get(finished.id)).toEqual(finished)
    expect(byId.get(job.id)?.state).toBe('interrupted')
    expect(await collect(finished.id)).toEqual(finishedEvents) // replayed from events.jsonl
    const video = await fetch(`${server.url}${finished.videos[0]!.url}`, { method: 'HEAD', headers: auth })
    expect([video.status, Number(video.headers.get('content-length')) > 1000]).toEqual([200, true])
    await server.close()

    await start({ resume: true })
    const resumed = await client.waitForJob(job.id)
    expect([resumed.state, resumed.videos.length]).toEqual(['succeeded', 1])
    expect(resumed.started_at).toBe(firstStart) // the first start is kept
    expect(Date.parse(resumed.resumed_at!)).toBeGreaterThan(Date.parse(firstStart))
    // the seed shown is the one the run used: the config's job.seed, not null
    const config = readConfigFile(join(jobsDir, job.id, 'run', 'config.toml'))
    expect(resumed.seed).toBe(config.job?.seed)
    expect(typeof resumed.seed).toBe('number')
  }, 400_000)

  it('reports the doctor report, and closes the Python bridge it opened', async () => {
    const { data, error } = await client.GET('/v1/doctor')
    expect(error, logs.join('\n')).toBeUndefined()
    expect(data?.node.version).toBe(process.versions.node)
    expect(data?.venv.exists).toBe(true)
    expect(data?.python?.python).toBeTruthy() // the report came through the bridge
    const pythons = descendants(process.pid).filter((pid) => {
      try {
        return alive(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('python')
      } catch {
        return false
      }
    })
    expect(pythons).toEqual([])
  }, 120_000)

  it('health is degraded (503) without a Python runtime, and so is submitting', async () => {
    const bare = createServer({
      port: 0,
      jobsDir: join(tmp, 'bare-jobs'),
      token: TOKEN,
      venvDir: join(tmp, 'no-venv'),
    })
    const bareClient = createClient({ baseUrl: await bare.listen(), token: TOKEN })
    try {
      const health = await bareClient.GET('/v1/health')
      expect(health.response.status).toBe(503)
      expect(health.error).toMatchObject({ status: 'degraded', runtime: { ready: false } })
      expect((health.error as { runtime: { fix: string } }).runtime.fix).toMatch(/ttt-video setup --venv/)
      const submit = await bareClient.POST('/v1/jobs', { body: { storyboards: oneVideo } })
      expect([submit.response.status, kind(submit.error)]).toEqual([503, 'runtime-unavailable'])
    } finally {
      await bare.close()
    }
  })

  it('deletes ended jobs beyond --keep-jobs / --keep-days at start and after each job ends', async () => {
    const dir = join(tmp, 'kept-jobs')
    const [, , twoDays, oneDay] = [10, 5, 2, 1].map((days) => endedJob(dir, days))
    const kept = createServer({ port: 0, jobsDir: dir, token: TOKEN, keepJobs: 2, keepDays: 1.5 })
    const keptClient = createClient({ baseUrl: await kept.listen(), token: TOKEN })
    try {
      const ids = async () => new Set((await keptClient.GET('/v1/jobs')).data!.jobs.map((j) => j.id))
      expect(await ids()).toEqual(new Set([oneDay])) // 10 and 5 days: beyond 2 jobs; 2 days: older than 1.5
      expect(existsSync(join(dir, twoDays!))).toBe(false)
      const running = await keptClient.submitJob({ storyboards: oneVideo, overrides: slow })
      const queued = await keptClient.submitJob({ storyboards: oneVideo, overrides: fast })
      await keptClient.POST('/v1/jobs/{id}/cancel', { params: { path: { id: queued.id } } })
      expect(await ids()).toEqual(new Set([queued.id, running.id, oneDay])) // 2 ended jobs: none beyond
      await keptClient.POST('/v1/jobs/{id}/cancel', { params: { path: { id: running.id } } })
      await keptClient.waitForJob(running.id)
      // the queue applies the retention once the job's run has returned, just after its state changed
      for (let i = 0; i < 100 && (await ids()).has(oneDay!); i++) await new Promise((r) => setTimeout(r, 20))
      expect(await ids()).toEqual(new Set([queued.id, running.id]))
      expect(existsSync(join(dir, oneDay!))).toBe(false)
    } finally {
      await kept.close()
    }
  }, 120_000)

  it('CORS is off unless origins are configured', async () => {
    const preflight = (base: string) =>
      fetch(`${base}/v1/jobs`, {
        method: 'OPTIONS',
        headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'DELETE' },
      })
    expect((await preflight(server.url)).headers.get('access-control-allow-origin')).toBeNull()
    const withCors = createServer({
      port: 0,
      jobsDir: join(tmp, 'cors-jobs'),
      token: TOKEN,
      corsOrigins: ['https://app.example'],
    })
    const base = await withCors.listen()
    try {
      const on = await preflight(base)
      expect([on.status, on.headers.get('access-control-allow-origin')]).toEqual([204, 'https://app.example'])
      expect(on.headers.get('access-control-allow-methods')).toMatch(/DELETE/)
      const get = (origin: string) => fetch(`${base}/v1/health`, { headers: { ...auth, Origin: origin } })
      expect((await get('https://app.example')).headers.get('access-control-allow-origin')).toBe(
        'https://app.example',
      )
      expect((await get('https://evil.example')).headers.get('access-control-allow-origin')).toBeNull()
    } finally {
      await withCors.close()
    }
  })
})
