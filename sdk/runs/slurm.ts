import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { ConfigError } from '../errors.js'
import type { ResolvedLayout } from '../launch/command.js'
import { quote } from '../launch/quote.js'

// Runs on a Slurm cluster: one sbatch job, one task per node, each task running torchrun (through
// `python -m ttt_video torchrun`) with the c10d rendezvous on the job's first node. The run directory must
// be on storage every node sees: the launcher follows the run's events.jsonl there, as it does locally.

export interface SlurmOptions {
  /** Machines of the job (one task each). */
  nodes?: number
  /** Processes per machine (one per GPU). */
  gpusPerNode?: number
  /** Ask Slurm for GPUs (--gpus-per-node); false runs CPU processes. Default: true. */
  gpus?: boolean
  partition?: string
  /** Wall-clock limit, in Slurm's format (e.g. "04:00:00"). */
  time?: string
  /** Port of the c10d rendezvous on the first node. */
  port?: number
  /** More #SBATCH options, as given to sbatch (e.g. "--account=abc"). */
  extra?: readonly string[]
  /** Where sbatch and scancel are (default: found on PATH). */
  bin?: string
}

export const SCRIPT_NAME = 'slurm.sbatch'
export const TASK_NAME = 'slurm-task.sh'

function check(options: SlurmOptions): void {
  const problems: string[] = []
  for (const [name, value] of [
    ['nodes', options.nodes],
    ['gpusPerNode', options.gpusPerNode],
    ['port', options.port],
  ] as const) {
    if (value !== undefined && (!Number.isInteger(value) || value < 1))
      problems.push(`slurm.${name} must be a positive integer, got ${value}`)
  }
  for (const option of options.extra ?? [])
    if (!option.startsWith('--') || /[\n\r]/.test(option))
      problems.push(`slurm.extra options look like --name=value on one line, got ${JSON.stringify(option)}`)
  if (problems.length > 0) throw new ConfigError(problems.map((message) => ({ path: 'slurm', message })))
}

/** The files of a Slurm launch: the sbatch script, and the task every node runs. */
export interface SlurmScripts {
  batch: string
  task: string
}

function batchHeader(kind: string, runDir: string, options: SlurmOptions): string[] {
  const perNode = options.gpusPerNode ?? 1
  return [
    '#!/bin/bash',
    `#SBATCH --job-name=ttt-video-${kind}`,
    `#SBATCH --nodes=${options.nodes ?? 1}`,
    '#SBATCH --ntasks-per-node=1',
    options.gpus === false ? `#SBATCH --cpus-per-task=${perNode}` : `#SBATCH --gpus-per-node=${perNode}`,
    `#SBATCH --output=${join(runDir, 'slurm-%j.out')}`,
    ...(options.partition ? [`#SBATCH --partition=${options.partition}`] : []),
    ...(options.time ? [`#SBATCH --time=${options.time}`] : []),
    ...(options.extra ?? []).map((o) => `#SBATCH ${o}`),
  ]
}

/**
 * The scripts of a run: `entry` is the `python -m ttt_video` command (e.g. ['train', '--run-dir', R]).
 * The batch script finds the first node and starts one task per node; each task runs torchrun with its
 * own node rank (SLURM_NODEID) and the rendezvous on the first node.
 */
export function slurmScripts(
  python: string,
  entry: readonly string[],
  runDir: string,
  options: SlurmOptions,
): SlurmScripts {
  check(options)
  const torchrun = [
    quote(python),
    '-m ttt_video torchrun',
    `--nproc-per-node=${options.gpusPerNode ?? 1}`,
    '--nnodes="$SLURM_NNODES" --node-rank="$SLURM_NODEID"',
    `--rdzv-backend=c10d --rdzv-endpoint="$TTT_VIDEO_HEAD:${options.port ?? 29500}" --rdzv-id="$SLURM_JOB_ID"`,
    '-m ttt_video',
    ...entry.map(quote),
  ]
  const batch = [
    ...batchHeader(entry[0] ?? 'run', runDir, options),
    '',
    'set -euo pipefail',
    'TTT_VIDEO_HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
    'export TTT_VIDEO_HEAD',
    `exec srun --kill-on-bad-exit=1 ${quote(join(runDir, TASK_NAME))}`,
  ]
  const task = ['#!/bin/bash', 'set -euo pipefail', `exec ${torchrun.join(' ')}`]
  return { batch: `${batch.join('\n')}\n`, task: `${task.join('\n')}\n` }
}

/** Writes both scripts into the run directory; returns the batch script's path. */
export function writeSlurmScripts(runDir: string, scripts: SlurmScripts): string {
  for (const [name, text] of [
    [TASK_NAME, scripts.task],
    [SCRIPT_NAME, scripts.batch],
  ] as const) {
    writeFileSync(join(runDir, name), text)
    chmodSync(join(runDir, name), 0o755)
  }
  return join(runDir, SCRIPT_NAME)
}

/** The launcher's command: sbatch that waits for the job and prints its id first (--parsable). */
export function sbatchCommand(script: string, options: SlurmOptions): string[] {
  return [join(options.bin ?? '', 'sbatch'), '--wait', '--parsable', script]
}

/** Cancels a job; a job that has already ended is not an error. */
export async function scancel(
  jobId: string,
  options: SlurmOptions,
  env?: Record<string, string>,
): Promise<void> {
  await execa(join(options.bin ?? '', 'scancel'), [jobId], { reject: false, ...(env ? { env } : {}) })
}

/** The process layout of a Slurm launch (the rendezvous is made in the job; its id is the job id). */
export function slurmLayout(options: SlurmOptions): ResolvedLayout {
  check(options)
  const nnodes = options.nodes ?? 1
  const nprocPerNode = options.gpusPerNode ?? 1
  return {
    nprocPerNode,
    nnodes,
    nodeRank: 0,
    rdzvEndpoint: undefined,
    rdzvId: `slurm-${Date.now()}`,
    worldSize: nnodes * nprocPerNode,
  }
}
