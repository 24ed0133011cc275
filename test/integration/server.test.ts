import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { demoBundle } from '../../sdk/runs/demo.js'
import {
  createClient,
  createServer,
  type JobStatus,
  type ServiceRunEvent,
  type TttVideoClient,
  type TttVideoServer,
} from '../../sdk/server/index.js'
import { probe } from '../../sdk/video/index.js'
import { alive, descendants } from '../helpers.js'

// A real server on an ephemeral loopback port, real Python with the tiny demo bundle: no mocks.
const tmp = mkdtempSync(join(tmpdir(), 'ttt-server-'))
process.env.TTT_VIDEO_CACHE = join(tmp, 'cache')
const jobsDir = join(tmp, 'jobs')
const TOKEN = 'test-token-0123456789abcdef'
const fast = { eval: { num_denoising_steps: 2 } }
const oneVideo = [[{ text: 'a red boat on a lake' }]]

let server: TttVideoServer
let client: TttVideoClient
const logs: string[] = []

function start(extra: { resume?: boolean } = {}): Promise<string> {
  server = createServer({
    port: 0,
    jobsDir,
    token: TOKEN,
    maxBodyBytes: 64 * 1024,
    heartbeatMs: 1000,
    onLog: (m) => logs.push(m),
    ...extra,
  })
  return server.listen().then((url) => {
    client = createClient({ baseUrl: url, token: TOKEN })
    return url
  })
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
function raw(
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const url = new URL(server.url)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, path, headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        body += c
      })
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }))
    })
    req.on('error', reject)
    req.end()
  })
}

const auth = { Authorization: `Bearer ${TOKEN}` }

function jobPid(id: string): number | null {
  return (JSON.parse(readFileSync(join(jobsDir, id, 'job.json'), 'utf8')) as { pid: number | null }).pid
}

describe('the HTTP job service', () => {
  beforeAll(async () => {
    await demoBundle() // once, outside the timed tests
    await start()
  })
  afterAll(async () => {
    await server?.close()
    rmSync(tmp, { recursive: true, force: true })
  })

  it('answers 401 without a token or with a wrong one', async () => {
    const none = await fetch(`${server.url}/v1/health`)
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/)
    expect(none.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect(((await none.json()) as { status: number }).status).toBe(401)
    const wrong = await fetch(`${server.url}/openapi.json`, { headers: { Authorization: 'Bearer nope' } })
    expect(wrong.status).toBe(401)
    const other = createClient({ baseUrl: server.url, token: `${TOKEN}x` })
    const { error, response } = await other.GET('/v1/jobs')
    expect(response.status).toBe(401)
    expect(error?.title).toBe('Unauthorized')
    // unknown paths too: nothing is told before the token is checked
    expect((await fetch(`${server.url}/nothing`)).status).toBe(401)

    const health = await client.GET('/v1/health')
    expect(health.data).toMatchObject({ status: 'ok', concurrency: 1 })
    const doc = await client.GET('/openapi.json')
    expect(doc.data?.openapi).toBe('3.1.0')
    expect((await client.GET('/v1/bundles')).data).toEqual({
      default: 'demo',
      bundles: [{ name: 'demo', demo: true }],
    })
    expect((await client.GET('/v1/presets')).data?.presets).toContain('tiny/3s')
  })

  it('answers 413 to an oversized body, with or without Content-Length', async () => {
    const big = JSON.stringify({ storyboards: [[{ text: 'x'.repeat(100_000) }]] })
    const declared = await fetch(`${server.url}/v1/jobs`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: big,
    })
    expect(declared.status).toBe(413)
    const chunks = [big.slice(0, 50_000), big.slice(50_000)]
    const streamed = await fetch(`${server.url}/v1/jobs`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: new ReadableStream({
        pull(controller) {
          const next = chunks.shift()
          if (next === undefined) controller.close()
          else controller.enqueue(new TextEncoder().encode(next))
        },
      }),
      duplex: 'half',
    } as RequestInit)
    expect(streamed.status).toBe(413)
    const notJson = await fetch(`${server.url}/v1/jobs`, { method: 'POST', headers: auth, body: 'x' })
    expect(notJson.status).toBe(415)
  })

  it('answers 422 with the path of each bad field (storyboards, overrides, preset, limits)', async () => {
    const paths = async (body: unknown) => {
      const { error, response } = await client.POST('/v1/jobs', { body: body as never })
      expect(response.status).toBe(422)
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      return error?.errors?.map((e) => e.path)
    }
    // schema errors (zod), with the request's own paths
    expect(await paths({ storyboards: [[{ text: 'ok' }, { text: 3 }]] })).toEqual(['storyboards[0][1].text'])
    expect(await paths({ storyboards: [[{ text: 'ok', colour: 'red' }]] })).toEqual([
      'storyboards[0][0].colour',
    ])
    expect(await paths({ storyboards: oneVideo, overrides: { eval: { num_denoising_steps: 0 } } })).toEqual([
      'overrides.eval.num_denoising_steps',
    ])
    // the SDK's own checks (StoryboardError / ConfigError issues), mapped to request paths
    expect(await paths({ storyboards: [[{ text: '   ' }]] })).toEqual(['storyboards[0][0].text'])
    expect(await paths({ storyboards: oneVideo, overrides: { eval: { image_width: 100 } } })).toEqual([
      'overrides.eval.image_width',
    ])
    expect(await paths({ storyboards: [[{ text: 'a' }], [{ text: 'b' }, { text: 'c' }]] })).toEqual([
      'storyboards[1]',
    ])
    expect(await paths({ storyboards: oneVideo, preset: 'nope/3s' })).toEqual(['preset'])
    // nothing names a filesystem path; bundles come by name from the server's list
    expect(await paths({ storyboards: oneVideo, overrides: { checkpoint: { model_dir: '/etc' } } })).toEqual([
      'overrides.checkpoint',
    ])
    expect(await paths({ storyboards: oneVideo, overrides: { eval: { output_dir: '/tmp' } } })).toEqual([
      'overrides.eval.output_dir',
    ])
    expect(await paths({ storyboards: oneVideo, bundle: 'other' })).toEqual(['bundle'])
    expect(await paths({ storyboards: oneVideo, bundle: '../demo' })).toEqual(['bundle'])
    expect(await paths({ storyboards: [[{ text: 'x'.repeat(2001) }]] })).toEqual(['storyboards[0][0].text'])
    const { error } = await client.POST('/v1/jobs', {
      body: { storyboards: oneVideo, overrides: { eval: { output_dir: '/tmp' } } },
    })
    expect(error?.errors?.[0]?.message).toMatch(/filesystem path/)
    const bad = await fetch(`${server.url}/v1/jobs`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: '{"storyboards": [',
    })
    expect(bad.status).toBe(400)
    expect((await client.GET('/v1/jobs')).data?.jobs).toEqual([]) // nothing was queued
  })

  it('answers 404 for unknown jobs and for ids that are not ids (../x)', async () => {
    const unknown = await client.GET('/v1/jobs/{id}', {
      params: { path: { id: '20200101-000000-00000000' } },
    })
    expect(unknown.response.status).toBe(404)
    expect(unknown.error?.type).toBe('urn:ttt-video:problem:not-found')
    const traversal = await client.GET('/v1/jobs/{id}', { params: { path: { id: '../x' } } })
    expect(traversal.response.status).toBe(404)
    for (const path of [
      '/v1/jobs/../x',
      '/v1/jobs/..%2Fx',
      '/v1/jobs/..%2F..%2Fetc%2Fpasswd/videos/0',
      '/v1/jobs/%2e%2e/events',
      '/v1/jobs/20200101-000000-00000000/videos/0',
    ]) {
      const r = await raw(path, auth)
      expect([path, r.status]).toEqual([path, 404])
      expect(JSON.parse(r.body).status).toBe(404)
    }
  })

  let finished: JobStatus
  let finishedEvents: ServiceRunEvent[]

  it('runs a job: SSE to the end for two clients, status, the mp4 with Range, preview, poster, subtitles', async () => {
    const job = await client.submitJob({ storyboards: oneVideo, overrides: fast, seed: 7 })
    expect(job.id).toMatch(/^\d{8}-\d{6}-[0-9a-f]{8}$/)
    expect(['queued', 'running']).toContain(job.state)
    // A typed call that tsc checks against the generated types.
    const { data: status } = await client.GET('/v1/jobs/{id}', { params: { path: { id: job.id } } })
    const total: number | undefined = status?.progress.videos_total
    expect(total).toBe(1)
    // @ts-expect-error the path parameter is `id`
    void (() => client.GET('/v1/jobs/{id}', { params: { path: { jobId: job.id } } }))

    const [a, b] = await Promise.all([collect(job.id), collect(job.id)])
    expect(a.length).toBeGreaterThan(5)
    expect(b).toEqual(a)
    expect(a[0]?.type).toBe('run.started')
    expect(a.at(-1)?.type).toBe('run.finished')
    expect(a.filter((e) => e.type === 'step').map((e) => (e.type === 'step' ? e.index : -1))).toEqual([0, 1])
    // resuming after an id gives exactly the rest
    expect(await collect(job.id, 3)).toEqual(a.slice(4))

    finished = await client.waitForJob(job.id)
    finishedEvents = a
    expect(finished).toMatchObject({ state: 'succeeded', seed: 7, error: null })
    expect(finished.progress).toMatchObject({ phase: 'finished', videos_total: 1, videos_done: 1, step: 2 })
    expect(finished.videos.map((v) => [v.index, v.frames, v.fps])).toEqual([[0, 49, 16]])

    const file = join(tmp, 'video.mp4')
    await client.downloadVideo(job.id, 0, file)
    const info = await probe(file)
    expect([info.frames, info.fps, info.width, info.height, info.codec]).toEqual([49, 16, 96, 64, 'h264'])
    const bytes = readFileSync(file)

    const part = await fetch(`${server.url}${finished.videos[0]!.url}`, {
      headers: { ...auth, Range: 'bytes=0-99' },
    })
    expect(part.status).toBe(206)
    expect(part.headers.get('content-range')).toBe(`bytes 0-99/${bytes.length}`)
    expect(Buffer.from(await part.arrayBuffer())).toEqual(bytes.subarray(0, 100))
    const tail = await fetch(`${server.url}${finished.videos[0]!.url}`, {
      headers: { ...auth, Range: 'bytes=-10' },
    })
    expect(tail.status).toBe(206)
    expect(Buffer.from(await tail.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 10))
    const outside = await fetch(`${server.url}${finished.videos[0]!.url}`, {
      headers: { ...auth, Range: `bytes=${bytes.length}-` },
    })
    expect(outside.status).toBe(416)
    expect(outside.headers.get('content-range')).toBe(`bytes */${bytes.length}`)
    expect((await raw(`/v1/jobs/${job.id}/videos/1`, auth)).status).toBe(404)

    for (const [url, type] of [
      [finished.videos[0]!.preview_url, 'image/gif'],
      [finished.videos[0]!.poster_url, 'image/png'],
      [finished.videos[0]!.subtitles_url, 'text/vtt'],
    ] as const) {
      const r = await fetch(`${server.url}${url}`, { headers: auth })
      expect([url, r.status]).toEqual([url, 200])
      expect(r.headers.get('content-type')).toContain(type)
      const body = Buffer.from(await r.arrayBuffer())
      expect(body.length).toBeGreaterThan(10)
      if (type === 'text/vtt') expect(body.toString()).toContain('a red boat on a lake')
    }
    const listed = await client.GET('/v1/jobs', { params: { query: { state: 'succeeded' } } })
    expect(listed.data?.jobs.map((j) => j.id)).toEqual([job.id])
  }, 400_000)

  it('cancels a queued job at once and a running one with its whole process tree', async () => {
    const running = await client.submitJob({
      storyboards: oneVideo,
      overrides: { eval: { num_denoising_steps: 200 } },
    })
    const queued = await client.submitJob({ storyboards: oneVideo, overrides: fast })
    expect(queued.state).toBe('queued')
    const cancelledQueued = await client.POST('/v1/jobs/{id}/cancel', { params: { path: { id: queued.id } } })
    expect(cancelledQueued.response.status).toBe(202)
    expect(cancelledQueued.data?.state).toBe('cancelled')
    expect(await collect(queued.id)).toEqual([]) // the stream ends at once

    await until(running.id, (e) => e.type === 'step')
    const pid = jobPid(running.id)!
    const tree = [pid, ...descendants(pid)]
    expect(tree.filter(alive).length).toBeGreaterThan(0)
    const t0 = performance.now()
    const cancel = await client.POST('/v1/jobs/{id}/cancel', { params: { path: { id: running.id } } })
    expect(cancel.response.status).toBe(202)
    const final = await client.waitForJob(running.id)
    expect(final.state).toBe('cancelled')
    expect(performance.now() - t0).toBeLessThan(8000)
    expect(tree.filter(alive)).toEqual([])
    expect(jobPid(running.id)).toBeNull()
    const again = await client.POST('/v1/jobs/{id}/cancel', { params: { path: { id: running.id } } })
    expect(again.response.status).toBe(409)
  }, 400_000)

  it('a restarted server lists the finished job, marks the interrupted one, and resumes it when asked', async () => {
    const job = await client.submitJob({ storyboards: oneVideo, overrides: fast })
    await until(job.id, (e) => e.type === 'model.loading')
    const pid = jobPid(job.id)!
    await server.close() // stops the running job: interrupted
    expect(alive(pid)).toBe(false)

    await start()
    const { data } = await client.GET('/v1/jobs')
    const byId = new Map(data!.jobs.map((j) => [j.id, j]))
    expect(byId.get(finished.id)).toEqual(finished)
    expect(byId.get(job.id)?.state).toBe('interrupted')
    expect(await collect(finished.id)).toEqual(finishedEvents) // replayed from events.jsonl
    const video = await fetch(`${server.url}${finished.videos[0]!.url}`, { method: 'HEAD', headers: auth })
    expect(video.status).toBe(200)
    expect(Number(video.headers.get('content-length'))).toBeGreaterThan(1000)
    await server.close()

    await start({ resume: true })
    const resumed = await client.waitForJob(job.id)
    expect(resumed.state).toBe('succeeded')
    expect(resumed.videos).toHaveLength(1)
  }, 400_000)

  it('reports the doctor report', async () => {
    const { data } = await client.GET('/v1/doctor')
    expect(data?.node.version).toBe(process.versions.node)
    expect(data?.venv.exists).toBe(true)
    expect(Array.isArray(data?.findings)).toBe(true)
  })

  it('CORS is off unless origins are configured', async () => {
    const preflight = (base: string) =>
      fetch(`${base}/v1/jobs`, {
        method: 'OPTIONS',
        headers: {
          Origin: 'https://app.example',
          'Access-Control-Request-Method': 'POST',
          'Access-Control-Request-Headers': 'authorization, content-type',
        },
      })
    const off = await preflight(server.url)
    expect(off.headers.get('access-control-allow-origin')).toBeNull()
    const withCors = createServer({
      port: 0,
      jobsDir: join(tmp, 'cors-jobs'),
      token: TOKEN,
      corsOrigins: ['https://app.example'],
    })
    const base = await withCors.listen()
    try {
      const on = await preflight(base)
      expect(on.status).toBe(204)
      expect(on.headers.get('access-control-allow-origin')).toBe('https://app.example')
      expect(on.headers.get('access-control-allow-headers')).toMatch(/Authorization/)
      const get = await fetch(`${base}/v1/health`, { headers: { ...auth, Origin: 'https://app.example' } })
      expect(get.headers.get('access-control-allow-origin')).toBe('https://app.example')
      const other = await fetch(`${base}/v1/health`, { headers: { ...auth, Origin: 'https://evil.example' } })
      expect(other.headers.get('access-control-allow-origin')).toBeNull()
    } finally {
      await withCors.close()
    }
  })

  it('keeps a generated token for the next start; a second server on the same jobs dir is refused', async () => {
    const dir = join(tmp, 'token-jobs')
    const first = createServer({ port: 0, jobsDir: dir, env: {} })
    expect(first.tokenSource).toBe('generated')
    const second = createServer({ port: 0, jobsDir: dir, env: {} })
    expect([second.tokenSource, second.token]).toEqual(['file', first.token])
    expect(createServer({ port: 0, jobsDir: dir, env: { TTT_VIDEO_TOKEN: TOKEN } }).tokenSource).toBe('env')
    await first.listen()
    await expect(second.listen()).rejects.toThrow(/in use by another server/)
    await first.close()
  })
})
