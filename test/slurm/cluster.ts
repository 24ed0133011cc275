/**
 * A real one-node Slurm cluster for integration tests, run by `scripts/slurm-local` (see docs/slurm.md).
 *
 *   const cluster = await startSlurm()
 *   if (!cluster.available) return ctx.skip(cluster.reason)
 *   await execa('sbatch', [...], { env: { ...process.env, ...cluster.env } })
 *   ...
 *   await stopSlurm()
 *
 * The cluster lives in one state dir: $SLURM_LOCAL_STATE_DIR, else /tmp/ttt-video-slurm. Tests own the
 * cluster in that dir: `stopSlurm()` stops it even if it was running before. Vitest runs test files one at a
 * time (vitest.config.ts), so each file may start and stop it; a start that finds it running reuses it.
 */
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { ROOT } from '../helpers.js'

export type SlurmCluster =
  | { available: true; env: Record<string, string>; stateDir: string }
  | { available: false; reason: string }

export const SLURM_LOCAL = join(ROOT, 'scripts', 'slurm-local')
export const SLURM_STATE_DIR = process.env.SLURM_LOCAL_STATE_DIR || '/tmp/ttt-video-slurm'

/** Installing the packages may wait for another apt-get's lock (up to 300 s in the script). */
const START_TIMEOUT_MS = 600_000
const STOP_TIMEOUT_MS = 120_000

interface ScriptRun {
  /** Exit status; null when the script did not exit by itself (not found, killed by the timeout). */
  code: number | null
  stdout: string
  stderr: string
  error: string
}

function runScript(command: 'start' | 'stop', timeoutMs: number): Promise<ScriptRun> {
  const args = [command, '--state-dir', SLURM_STATE_DIR]
  return new Promise((resolve) => {
    execFile(SLURM_LOCAL, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (!error) return resolve({ code: 0, stdout, stderr, error: '' })
      const code = typeof error.code === 'number' ? error.code : null
      const why = error.killed ? `killed after ${timeoutMs / 1000} s` : error.message.split('\n')[0]
      resolve({ code, stdout, stderr, error: why ?? '' })
    })
  })
}

/** What went wrong, for a skip message: the script's exit status and the end of its messages. */
function failure(command: string, run: ScriptRun): string {
  const tail = run.stderr.trim().split('\n').slice(-20).join('\n')
  const status = run.code === null ? run.error : `exit status ${run.code}`
  return `scripts/slurm-local ${command} failed (${status})${tail ? `:\n${tail}` : ''}`
}

/**
 * The variables of the script's `export NAME=VALUE` lines. Values are quoted by bash's printf %q; plain
 * paths come out as they are, and backslash escapes (e.g. `a\ b`) are undone.
 */
export function parseExports(stdout: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const line of stdout.split('\n')) {
    const match = /^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim())
    if (!match) continue
    const [, name, quoted] = match as unknown as [string, string, string]
    if (quoted.startsWith("$'")) {
      throw new Error(
        `slurm-local printed ${name} with control characters (${quoted}); use a plainer state dir`,
      )
    }
    env[name] = quoted.replace(/\\(.)/g, '$1')
  }
  return env
}

/**
 * Start the local cluster (installing Slurm with apt-get if needed) and wait until its node is idle.
 * Resolves to the variables to add to a child's environment for sbatch/squeue/scancel, or, where Slurm
 * cannot run here (not Linux, not root, packages not installable), to the reason. Never rejects.
 */
export async function startSlurm(): Promise<SlurmCluster> {
  if (process.platform !== 'linux') {
    return { available: false, reason: `a local Slurm cluster needs Linux, not ${process.platform}` }
  }
  const run = await runScript('start', START_TIMEOUT_MS)
  if (run.code !== 0) return { available: false, reason: failure('start', run) }
  let env: Record<string, string>
  try {
    env = parseExports(run.stdout)
  } catch (error) {
    return { available: false, reason: (error as Error).message }
  }
  if (!env.SLURM_CONF) {
    return { available: false, reason: `scripts/slurm-local start printed no SLURM_CONF: ${run.stdout}` }
  }
  return { available: true, env, stateDir: SLURM_STATE_DIR }
}

/** Stop the cluster: cancel its jobs and stop its daemons. Rejects with the script's messages on failure. */
export async function stopSlurm(): Promise<void> {
  if (process.platform !== 'linux') return
  const run = await runScript('stop', STOP_TIMEOUT_MS)
  if (run.code !== 0) throw new Error(failure('stop', run))
}
