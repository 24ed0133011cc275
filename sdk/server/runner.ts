import { createWriteStream, readFileSync, type WriteStream } from 'node:fs'
import { setPriority } from 'node:os'
import { CancelledError, TttVideoError } from '../errors.js'
import { generate } from '../runs/generate.js'
import type { Job } from './job.js'
import { type JobRecord, type JobStore, processAlive } from './store.js'
import { generateOptions, type Slot } from './validate.js'

// One attempt of one job: generate() in the job's run directory, its events into the job, its outcome
// into job.json.

export interface RunnerDeps {
  store: JobStore
  bundles: Readonly<Record<string, string>>
  venvDir: string | undefined
  /** Niceness of the job processes (0: as the server's). */
  jobNice: number
  onLog: (message: string) => void
}

/** Marks the job running. A resumed job keeps its first start and gets `resumed_at`. */
function startAttempt(job: Job, store: JobStore): void {
  job.allEvents() // loaded before the run starts: from now on they come from the run
  store.archiveEvents(job.id)
  const now = new Date().toISOString()
  const first = job.record.started_at
  job.update({
    state: 'running',
    started_at: first ?? now,
    resumed_at: first === null ? job.record.resumed_at : now,
    finished_at: null,
    error: null,
  })
}

async function generateJob(job: Job, slot: Slot, signal: AbortSignal, log: WriteStream, deps: RunnerDeps) {
  const input = deps.store.readInput(job.id)
  const bundlePath = deps.bundles[input.bundle]
  if (bundlePath === undefined)
    throw new TttVideoError('CONFIG', `bundle "${input.bundle}" is not configured on this server`)
  const note = (message: string) => log.write(`note: ${message}\n`)
  const run = await generate(input.storyboards, {
    ...generateOptions(input, bundlePath, slot, deps.venvDir),
    runDir: deps.store.runDir(job.id),
    signal,
    onLog: ({ stream, line }) => log.write(`${stream}: ${line}\n`),
    onNotice: note,
  })
  if (run.pid !== undefined && deps.jobNice > 0) lowerPriority(run.pid, deps.jobNice)
  job.update({ pid: run.pid ?? null })
  for await (const event of run) job.push(event)
  await run.result
}

function outcomeOf(job: Job, error: unknown, onLog: (message: string) => void): Partial<JobRecord> {
  if (job.stopReason === 'shutdown') return { state: 'interrupted' }
  if (job.stopReason === 'cancel' || error instanceof CancelledError) return { state: 'cancelled' }
  const code = error instanceof TttVideoError ? error.code : 'INTERNAL'
  const message = (error as Error).message
  onLog(`job ${job.id} failed: ${message.split('\n')[0]}`)
  return { state: 'failed', error: { code, message } }
}

/** Runs one attempt of `job` in `slot`; resolves when it has ended, whatever the outcome. */
export async function runJob(job: Job, slot: Slot, deps: RunnerDeps): Promise<void> {
  const controller = new AbortController()
  job.controller = controller
  job.stopReason = undefined
  startAttempt(job, deps.store)
  const log = createWriteStream(deps.store.logFile(job.id), { flags: 'a' })
  log.on('error', () => {})
  let outcome: Partial<JobRecord>
  try {
    await generateJob(job, slot, controller.signal, log, deps)
    outcome = { state: 'succeeded' }
  } catch (e) {
    outcome = outcomeOf(job, e, deps.onLog)
  } finally {
    await new Promise<void>((resolve) => log.end(resolve))
    job.controller = undefined
  }
  job.update({ ...outcome, pid: null, finished_at: new Date().toISOString() })
}

/**
 * Lowers the priority of a job's process as soon as it starts: the threads and processes it makes later
 * (torch's thread pool, torchrun's workers) inherit it.
 */
function lowerPriority(pid: number, nice: number): void {
  try {
    setPriority(pid, nice)
  } catch {
    // gone already, or not allowed: the job runs at the server's priority
  }
}

/** Kills the process group a crashed server left running, when it still looks like ours. */
export function stopOrphan(pid: number, onLog: (message: string) => void): void {
  if (!processAlive(pid)) return
  let cmdline = ''
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {}
  if (!cmdline.includes('ttt_video') && !cmdline.includes('torch.distributed.run')) return
  try {
    process.kill(-pid, 'SIGKILL')
    onLog(`stopped the processes (group ${pid}) of a job a previous server left running`)
  } catch {}
}
