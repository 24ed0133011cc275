import { configToToml } from '../contracts/config/load.js'
import type { JobConfig } from '../contracts/config/schema.js'
import { type LaunchOptions, launchPlan } from '../runs/launch.js'
import { out, quote } from './flags.js'

/** What --dry-run and --slurm-dry-run print: the resolved config and the command or Slurm scripts. */
export function printPlan(
  config: JobConfig,
  spec: { entry: readonly string[]; runDir: string },
  options: LaunchOptions,
): void {
  out(`# resolved config\n${configToToml(config)}`)
  const plan = launchPlan(spec, options)
  if (plan.scripts)
    out(`# Slurm batch script\n${plan.scripts.batch}\n# task of each node\n${plan.scripts.task}`)
  else out(`# command (run directory: ${spec.runDir})\n${plan.command.map(quote).join(' ')}\n`)
}
