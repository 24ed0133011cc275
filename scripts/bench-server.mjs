#!/usr/bin/env node
// Load benchmark of the HTTP job service (needs `npm run build`).
//
//   node scripts/bench-server.mjs [--clients 50] [--interval-ms 100] [--steps 30] [--max-seconds 120] [--job-nice 0]
//
// Starts the service in a child process (loopback, a temporary jobs dir, the tiny demo model), submits
// one job, and runs N concurrent clients against it from this process: each follows the job's SSE
// stream and polls GET /v1/jobs/{id} every interval until the job ends or --max-seconds pass (then the
// server is closed, which stops the job). Loopback only; the clients use node:http. Prints the
// percentiles of the status latency (only requests made while the job ran, i.e. while Python worked)
// and of the event delivery delay (receipt time minus the event's `time`, live events only).
import { fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'

const agent = new Agent({ keepAlive: true, maxSockets: 256 })

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '50' },
    'interval-ms': { type: 'string', default: '100' },
    steps: { type: 'string', default: '30' },
    'max-seconds': { type: 'string', default: '120' },
    'job-nice': { type: 'string', default: '0' },
    serve: { type: 'boolean' },
  },
})

if (values.serve) {
  // The server process.
  const { createServer } = await import('../dist/server/index.js')
  const jobsDir = mkdtempSync(join(tmpdir(), 'ttt-bench-jobs-'))
  const server = createServer({
    port: 0,
    jobsDir,
    jobNice: Number(values['job-nice']),
    onLog: (m) => console.error(`server: ${m}`),
  })
  const url = await server.listen()
  const loop = monitorEventLoopDelay({ resolution: 5 })
  process.send({ url, token: server.token })
  process.on('message', async (m) => {
    if (m === 'measure') loop.enable()
    if (m === 'report') {
      loop.disable()
      process.send({ loopDelayMs: histogram(loop) })
    }
    if (m !== 'stop') return
    await server.close()
    rmSync(jobsDir, { recursive: true, force: true })
    process.exit(0)
  })
} else {
  await bench()
}

/** Event-loop delay percentiles in ms (the lateness of a 5 ms timer: how long the loop was blocked or starved). */
function histogram(h) {
  // the histogram holds whole timer intervals: take the 5 ms resolution off to leave the delay
  const ms = (ns) => Math.max(0, Math.round((ns - 5e6) / 1e5) / 10)
  return { p50: ms(h.percentile(50)), p95: ms(h.percentile(95)), p99: ms(h.percentile(99)), max: ms(h.max) }
}

function percentiles(samples) {
  const s = [...samples].sort((a, b) => a - b)
  const at = (q) => (s.length === 0 ? Number.NaN : s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)])
  const r = (x) => Math.round(x * 10) / 10
  return { n: s.length, p50: r(at(0.5)), p95: r(at(0.95)), p99: r(at(0.99)), max: r(s.at(-1) ?? Number.NaN) }
}

async function* sse(body) {
  const decoder = new TextDecoder()
  let buffer = ''
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true })
    let end = buffer.indexOf('\n\n')
    while (end >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const message = { event: 'message', data: '' }
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) message.event = line.slice(7)
        else if (line.startsWith('data: ')) message.data += line.slice(6)
      }
      if (message.data) yield message
      end = buffer.indexOf('\n\n')
    }
  }
}

/** GET with node:http (lighter than fetch, so the load generator disturbs the measurement less). */
function get(url, headers) {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, headers }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** The service in a child process (this script with --serve); resolves to { child, url, token }. */
async function startServer() {
  const child = fork(new URL(import.meta.url).pathname, ['--serve', '--job-nice', values['job-nice']], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const { url, token } = await new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`the server exited (${code})`)))
  })
  return { child, url, token }
}

/** POST one 3 s job of `steps` denoising steps; resolves to the job's JSON. */
async function submitJob(url, headers, steps) {
  const submitted = await fetch(`${url}/v1/jobs`, {
    method: 'POST',
    headers: { ...headers, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      storyboards: [[{ text: 'a red boat on a lake at dawn' }]],
      overrides: { eval: { num_denoising_steps: steps } },
    }),
  })
  if (submitted.status !== 202) throw new Error(`submit: ${submitted.status} ${await submitted.text()}`)
  return submitted.json()
}

/** One client: follows the job's SSE stream and polls its status every `interval` ms until it ends or
 * `deadline`; pushes into the shared `samples` ({ statusMs, statusAllMs, delayMs, errors }). */
function client(jobUrl, headers, interval, deadline, samples) {
  let ended = false
  const follow = async () => {
    const connected = Date.now() / 1000
    const signal = AbortSignal.timeout(Math.max(1, deadline - Date.now())) // the time bound
    try {
      const res = await fetch(`${jobUrl}/events`, { headers, signal })
      for await (const m of sse(res.body)) {
        if (m.event === 'end') break
        const event = JSON.parse(m.data)
        if (event.time >= connected) samples.delayMs.push(Date.now() - event.time * 1000)
      }
    } catch (e) {
      if (!signal.aborted) throw e
    }
    ended = true
  }
  const poll = async () => {
    while (!ended && Date.now() < deadline) {
      const start = performance.now()
      const res = await get(jobUrl, headers)
      const ms = performance.now() - start
      if (res.status !== 200) samples.errors++
      samples.statusAllMs.push(ms)
      if (JSON.parse(res.body).state === 'running') samples.statusMs.push(ms)
      await new Promise((r) => setTimeout(r, interval))
    }
  }
  return Promise.all([follow(), poll()])
}

/** The result object printed as JSON (and as a table by `report`). */
function summary(settings, final, seconds, samples, serverLoop, clientLoop) {
  return {
    date: new Date().toISOString().slice(0, 10),
    cpus: cpus().length,
    ...settings,
    load_average: loadavg().map((x) => Math.round(x * 10) / 10),
    job_state: final.state,
    seconds: Math.round(seconds * 10) / 10,
    status_requests: samples.statusAllMs.length,
    status_per_second: Math.round(samples.statusAllMs.length / seconds),
    status_errors: samples.errors,
    status_ms_while_running: percentiles(samples.statusMs),
    status_ms_all: percentiles(samples.statusAllMs),
    event_delay_ms: percentiles(samples.delayMs),
    server_loop_delay_ms: serverLoop,
    client_loop_delay_ms: histogram(clientLoop),
  }
}

function report(result) {
  const cells = (p) => [p.p50, p.p95, p.p99, p.max].map((x) => String(x).padStart(8)).join(' ')
  const row = (name, p) => `${name.padEnd(34)} ${String(p.n).padStart(6)} ${cells(p)}`
  const loops = (name, p) => `${name.padEnd(34)} ${''.padStart(6)} ${cells(p)}`
  console.log(
    `job ${result.job_state} in ${result.seconds} s; ${result.clients} clients, ${result.status_per_second} status requests/s, ${result.status_errors} errors`,
  )
  console.log(
    `${''.padEnd(34)} ${'n'.padStart(6)} ${['p50', 'p95', 'p99', 'max'].map((x) => x.padStart(8)).join(' ')}`,
  )
  console.log(row('status latency, job running (ms)', result.status_ms_while_running))
  console.log(row('status latency, all (ms)', result.status_ms_all))
  console.log(row('event delivery delay (ms)', result.event_delay_ms))
  console.log(loops('server event-loop delay (ms)', result.server_loop_delay_ms))
  console.log(loops('client event-loop delay (ms)', result.client_loop_delay_ms))
  console.log(JSON.stringify(result))
}

async function bench() {
  const settings = {
    clients: Number(values.clients),
    interval_ms: Number(values['interval-ms']),
    steps: Number(values.steps),
    job_nice: Number(values['job-nice']),
  }
  const deadline = Date.now() + Number(values['max-seconds']) * 1000
  const { child, url, token } = await startServer()
  const headers = { Authorization: `Bearer ${token}` }
  try {
    const job = await submitJob(url, headers, settings.steps)
    const jobUrl = `${url}/v1/jobs/${job.id}`
    const t0 = Date.now()
    const samples = { statusMs: [], statusAllMs: [], delayMs: [], errors: 0 }
    const clientLoop = monitorEventLoopDelay({ resolution: 5 })
    clientLoop.enable()
    child.send('measure')
    const clients = Array.from({ length: settings.clients }, () =>
      client(jobUrl, headers, settings.interval_ms, deadline, samples),
    )
    await Promise.all(clients)
    clientLoop.disable()
    const serverLoop = new Promise((resolve) => child.once('message', (m) => resolve(m.loopDelayMs)))
    child.send('report')
    const final = await (await fetch(jobUrl, { headers })).json()
    const seconds = (Date.now() - t0) / 1000
    report(summary(settings, final, seconds, samples, await serverLoop, clientLoop))
  } finally {
    child.send('stop')
    await new Promise((r) => child.once('exit', r))
  }
}
