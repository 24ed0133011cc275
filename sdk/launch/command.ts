import { ConfigError } from '../errors.js'

/** How many processes run, and where: one machine (`gpus` or `nprocPerNode`) or several (`nnodes`). */
export interface ProcessLayout {
  /** Processes on this machine: one per GPU (on a CPU-only machine, CPU processes). Same as nprocPerNode. */
  gpus?: number
  nprocPerNode?: number
  /** Machines taking part; each runs its own launcher with its own `nodeRank`. */
  nnodes?: number
  nodeRank?: number
  /** host:port of the c10d rendezvous (required when nnodes > 1). */
  rdzvEndpoint?: string
  /** Rendezvous id shared by the launchers of one run (default: derived from the run directory). */
  rdzvId?: string
}

export interface ResolvedLayout {
  nprocPerNode: number
  nnodes: number
  nodeRank: number
  rdzvEndpoint: string | undefined
  rdzvId: string
  worldSize: number
}

export function resolveLayout(layout: ProcessLayout, runId: string): ResolvedLayout {
  const problems: string[] = []
  const positive = (name: string, value: number | undefined, fallback: number) => {
    if (value === undefined) return fallback
    if (!Number.isInteger(value) || value < 1)
      problems.push(`${name} must be a positive integer, got ${value}`)
    return value
  }
  if (layout.gpus !== undefined && layout.nprocPerNode !== undefined && layout.gpus !== layout.nprocPerNode) {
    problems.push(
      `gpus (${layout.gpus}) and nprocPerNode (${layout.nprocPerNode}) disagree; give one of them`,
    )
  }
  const nprocPerNode = positive('gpus/nprocPerNode', layout.nprocPerNode ?? layout.gpus, 1)
  const nnodes = positive('nnodes', layout.nnodes, 1)
  const nodeRank = layout.nodeRank ?? 0
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes) {
    problems.push(`nodeRank must be between 0 and nnodes - 1 (${nnodes - 1}), got ${nodeRank}`)
  }
  if (nnodes > 1 && !layout.rdzvEndpoint)
    problems.push('nnodes > 1 needs rdzvEndpoint (host:port of the rendezvous)')
  if (layout.rdzvEndpoint && !/^[\w.-]+:\d+$|^\[[\w:]+\]:\d+$/.test(layout.rdzvEndpoint)) {
    problems.push(`rdzvEndpoint must look like host:port, got "${layout.rdzvEndpoint}"`)
  }
  if (problems.length > 0) throw new ConfigError(problems.map((message) => ({ path: 'processes', message })))
  return {
    nprocPerNode,
    nnodes,
    nodeRank,
    rdzvEndpoint: layout.rdzvEndpoint,
    rdzvId: layout.rdzvId ?? runId,
    worldSize: nprocPerNode * nnodes,
  }
}

/**
 * The command that starts a Python entry point (`python -m ttt_video <entry> ...args`): one process, or
 * torchrun through `python -m ttt_video torchrun`, which is torchrun with a safeguard that ends it when
 * its parent dies.
 */
export function pythonCommand(python: string, entry: readonly string[], layout: ResolvedLayout): string[] {
  const module = ['-m', 'ttt_video', ...entry]
  if (layout.worldSize === 1) return [python, ...module]
  const rendezvous =
    layout.nnodes > 1
      ? [
          `--nnodes=${layout.nnodes}`,
          `--node-rank=${layout.nodeRank}`,
          '--rdzv-backend=c10d',
          `--rdzv-endpoint=${layout.rdzvEndpoint}`,
          `--rdzv-id=${layout.rdzvId}`,
        ]
      : ['--standalone']
  return [
    python,
    '-m',
    'ttt_video',
    'torchrun',
    `--nproc-per-node=${layout.nprocPerNode}`,
    ...rendezvous,
    ...module,
  ]
}

/**
 * Environment of the Python processes. CPU thread counts are chosen on the Python side
 * (python/ttt_video/lifecycle.py), the same for runs started here and runs started by hand.
 */
export function runEnvironment(extra: Record<string, string> = {}): Record<string, string> {
  return { PYTHONUNBUFFERED: '1', ...extra }
}
