import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { alive } from '../helpers.js'
import { parseExports, SLURM_LOCAL, type SlurmCluster, startSlurm, stopSlurm } from './cluster.js'

const run = promisify(execFile)

// Slurm can run here when we are root on a Debian-like Linux (apt-get to install it). There a failed start
// is a failure of this test, not a skip; elsewhere the test is skipped with the helper's reason.
const slurmPossible =
  process.platform === 'linux' && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')

describe('parseExports', () => {
  it('reads export lines and undoes printf %q backslashes', () => {
    const out = 'export SLURM_CONF=/tmp/a\\ b/slurm.conf\nnoise\nexport X=1\n'
    expect(parseExports(out)).toEqual({ SLURM_CONF: '/tmp/a b/slurm.conf', X: '1' })
  })

  it("refuses $'...' values it cannot decode", () => {
    expect(() => parseExports("export SLURM_CONF=$'/tmp/a\\nb'")).toThrow(/control characters/)
  })
})

describe('local Slurm cluster', () => {
  let cluster: SlurmCluster
  const work = mkdtempSync(join(tmpdir(), 'ttt-slurm-'))
  const slurm = (command: string, args: string[]) => {
    if (!cluster.available) throw new Error(cluster.reason)
    return run(command, args, { cwd: work, env: { ...process.env, ...cluster.env } })
  }

  const jobState = async (id: string) =>
    (await slurm('squeue', ['-h', '-t', 'all', '-j', id, '-o', '%T'])).stdout.trim()

  beforeAll(async () => {
    cluster = await startSlurm()
  })
  afterAll(async () => {
    await stopSlurm()
    rmSync(work, { recursive: true, force: true })
  })

  it('starts where Slurm can run', (ctx) => {
    if (!cluster.available) {
      if (!slurmPossible) return ctx.skip(cluster.reason)
      expect.fail(cluster.reason)
    }
    expect(cluster.env.SLURM_CONF).toBe(join(cluster.stateDir, 'slurm.conf'))
  })

  it('runs a batch job with the exported environment', async (ctx) => {
    if (!cluster.available) return ctx.skip(cluster.reason)
    // Not sbatch --wait: it polls after 2 s, then 8 s more (docs/slurm.md).
    const { stdout } = await slurm('sbatch', [
      '--parsable',
      '-o',
      'job-%j.out',
      '--wrap',
      'echo $SLURM_JOB_ID $SLURM_NNODES $SLURM_NODEID',
    ])
    const id = stdout.trim()
    expect(id).toMatch(/^\d+$/)
    await waitFor(async () => ((await jobState(id)) === 'COMPLETED' ? true : undefined))
    expect(readFileSync(join(work, `job-${id}.out`), 'utf8')).toBe(`${id} 1 0\n`)
  })

  it('scancel ends a running job and its processes', async (ctx) => {
    if (!cluster.available) return ctx.skip(cluster.reason)
    const pidFile = join(work, 'sleep.pid')
    const { stdout } = await slurm('sbatch', [
      '--parsable',
      '-o',
      '/dev/null',
      '--wrap',
      `sleep 300 & echo $! > ${pidFile}; wait`,
    ])
    const id = stdout.trim()
    const pid = await waitFor(() =>
      existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) || undefined : undefined,
    )
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toBe('sleep\u0000300\u0000')
    await slurm('scancel', [id])
    await waitFor(() => (alive(pid) ? undefined : true))
    // The process can be gone while Slurm still reports the job COMPLETING (it reaps the step first).
    const settled = await waitFor(async () => {
      const state = await jobState(id)
      return TRANSIENT_STATES.has(state) ? undefined : state
    })
    expect(settled).toBe('CANCELLED')
  })

  it('stops, and a second stop is harmless', async (ctx) => {
    if (!cluster.available) return ctx.skip(cluster.reason)
    await stopSlurm()
    await stopSlurm()
    const status = run(SLURM_LOCAL, ['status', '--state-dir', cluster.stateDir])
    await expect(status).rejects.toMatchObject({
      code: 3,
      stdout: expect.stringContaining('slurmctld  stopped'),
    })
  })
})

/** States a job passes through on its way to a final one (squeue %T). */
const TRANSIENT_STATES = new Set(['PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', ''])

/** Poll `probe` every 100 ms for up to 30 s until it returns a value. */
async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const value = await probe()
    if (value !== undefined) return value
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error('timed out after 30 s')
}
