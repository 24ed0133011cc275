import { parseArgs } from 'node:util'
import type { ProcessLayout } from '../launch/command.js'
import type { SlurmOptions } from '../runs/slurm.js'

export { quote } from '../launch/quote.js'

// What every command shares: flag parsing, number flags, output, and the command's shape.

export type Flags = Record<string, string | boolean | string[] | undefined>
export type FlagSpec = Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>

/** A wrong command line: printed without a stack, exit code 2. */
export class UsageError extends Error {}

export interface Command {
  name: string
  /** The usage lines of `ttt-video --help`. */
  usage: string
  flags: FlagSpec
  run(positionals: string[], values: Flags): Promise<number>
}

export function parse(args: string[], flags: FlagSpec): { values: Flags; positionals: string[] } {
  try {
    return parseArgs({
      args,
      options: { ...flags, verbose: { type: 'boolean' }, help: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    })
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
}

/** A whole-number flag >= `min`, or undefined when absent. */
export function intFlag(value: unknown, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined
  const text = String(value)
  if (!/^[-+]?\d+$/.test(text) || Number(text) < min)
    throw new UsageError(`--${name} must be a whole number >= ${min}, got "${text}"`)
  return Number(text)
}

export const out = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`)
export const err = (text: string) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`)

/** The flags of a multi-process launch (generate, train, prepare). */
export const LAYOUT_FLAGS = {
  gpus: { type: 'string' },
  nnodes: { type: 'string' },
  'node-rank': { type: 'string' },
  'rdzv-endpoint': { type: 'string' },
  'rdzv-id': { type: 'string' },
} as const

export function layoutFlags(values: Flags): ProcessLayout {
  const gpus = intFlag(values.gpus, 'gpus', 1)
  const nnodes = intFlag(values.nnodes, 'nnodes', 1)
  const nodeRank = intFlag(values['node-rank'], 'node-rank', 0)
  return {
    ...(gpus !== undefined ? { gpus } : {}),
    ...(nnodes !== undefined ? { nnodes } : {}),
    ...(nodeRank !== undefined ? { nodeRank } : {}),
    ...(values['rdzv-endpoint'] ? { rdzvEndpoint: values['rdzv-endpoint'] as string } : {}),
    ...(values['rdzv-id'] ? { rdzvId: values['rdzv-id'] as string } : {}),
  }
}

/**
 * Cancels on Ctrl-C, SIGTERM, SIGHUP, and when the process that started this one has gone (npx or a
 * shell killed by a supervisor leaves us with PID 1 as parent). Returns the signal and a disposer.
 */
export function cancellation(): { signal: AbortSignal; exitCode(): number; dispose(): void } {
  const controller = new AbortController()
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']
  const codes: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 }
  let code = 130
  const stop = (signal: NodeJS.Signals, reason: string) => {
    code = codes[signal] ?? 130
    controller.abort(reason)
  }
  const onSignal = (signal: NodeJS.Signals) => stop(signal, signal === 'SIGINT' ? 'Ctrl-C' : signal)
  for (const s of signals) process.on(s, onSignal)
  const parent = process.ppid
  const watch = setInterval(() => {
    // exits like SIGHUP (129): the terminal or launcher that started us has gone
    if (process.ppid !== parent) stop('SIGHUP', `the launcher (pid ${parent}) has gone`)
  }, 1000)
  watch.unref()
  return {
    signal: controller.signal,
    exitCode: () => code,
    dispose() {
      clearInterval(watch)
      for (const s of signals) process.removeListener(s, onSignal)
    },
  }
}

/** The flags of a Slurm launch (generate, train, prepare); --gpus is the processes per node. */
export const SLURM_FLAGS = {
  slurm: { type: 'boolean' },
  'slurm-dry-run': { type: 'boolean' },
  'slurm-partition': { type: 'string' },
  'slurm-time': { type: 'string' },
  'slurm-cpu': { type: 'boolean' },
  'slurm-option': { type: 'string', multiple: true },
} as const

export function slurmFlags(values: Flags): SlurmOptions | undefined {
  if (!values.slurm && !values['slurm-dry-run']) return undefined
  const nodes = intFlag(values.nnodes, 'nnodes', 1)
  const gpusPerNode = intFlag(values.gpus, 'gpus', 1)
  return {
    ...(nodes !== undefined ? { nodes } : {}),
    ...(gpusPerNode !== undefined ? { gpusPerNode } : {}),
    ...(values['slurm-partition'] ? { partition: values['slurm-partition'] as string } : {}),
    ...(values['slurm-time'] ? { time: values['slurm-time'] as string } : {}),
    ...(values['slurm-cpu'] ? { gpus: false } : {}),
    ...(values['slurm-option'] ? { extra: values['slurm-option'] as string[] } : {}),
  }
}

/** The flags every launched job shares (generate, train, prepare). */
export const JOB_FLAGS = {
  config: { type: 'string' },
  preset: { type: 'string' },
  set: { type: 'string', multiple: true },
  ...LAYOUT_FLAGS,
  ...SLURM_FLAGS,
  'run-dir': { type: 'string' },
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
} as const

/** The options of JOB_FLAGS; `Preset` is the command's preset names (the runs check them). */
export function jobFlags<Preset extends string>(
  values: Flags,
): ProcessLayout & {
  slurm?: SlurmOptions
  config?: string
  preset?: Preset
  runDir?: string
  set: string[]
} {
  const slurm = slurmFlags(values)
  return {
    ...(slurm ? { slurm } : {}),
    ...(values.config ? { config: values.config as string } : {}),
    ...(values.preset ? { preset: values.preset as Preset } : {}),
    ...(values['run-dir'] ? { runDir: values['run-dir'] as string } : {}),
    set: (values.set as string[] | undefined) ?? [],
    ...layoutFlags(values),
  }
}
