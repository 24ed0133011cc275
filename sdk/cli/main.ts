#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { TttVideoError } from '../errors.js'
import { packageRoot } from '../python/paths.js'
import { COMMANDS } from './commands/index.js'
import { err, out, parse, UsageError } from './flags.js'

// The `ttt-video` command: finds the command, parses its flags, runs it, and turns errors into exit
// codes (2: usage, 1: failure, 130: cancelled). Each command lives in its own file under commands/.

function help(): string {
  return `ttt-video: multi-scene videos with TTT-Video (CogVideoX-5B + Test-Time-Training layers)

Usage:
${COMMANDS.map((c) => `  ${c.usage.replace(/\n/g, '\n  ')}`).join('\n')}

generate without --model runs the demo model (models/demo) on the CPU; presets: ttt-mlp/9s, ttt-linear/3s,
cogvideox/3s, demo/9s, tiny/9s, ... (configs/eval/). Ctrl-C cancels a run and keeps finished work.

Every command takes --verbose (stack traces on errors) and --help; the commands whose usage shows
--json print machine-readable output with it, errors included. ttt-video --version prints the version.
`
}

function version(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string })
    .version
}

/** An error as the user should see it: one JSON line with --json, else text. */
function report(e: unknown, argv: string[]): number {
  const json = argv.includes('--json')
  const verbose = argv.includes('--verbose')
  const code = e instanceof UsageError ? 'USAGE' : e instanceof TttVideoError ? e.code : 'INTERNAL'
  const message = e instanceof Error ? e.message : String(e)
  if (json) {
    const issues =
      e instanceof TttVideoError && 'issues' in e ? { issues: (e as { issues: unknown }).issues } : {}
    out(JSON.stringify({ type: 'error', code, message, ...issues }))
  } else if (e instanceof UsageError) err(`ttt-video: ${message}`)
  else if (e instanceof TttVideoError) err(verbose ? (e.stack ?? message) : message)
  else
    err(verbose ? String((e as Error).stack ?? e) : `ttt-video: ${message} (run with --verbose for details)`)
  return e instanceof UsageError ? 2 : code === 'CANCELLED' ? 130 : 1
}

function print(text: string): number {
  out(text)
  return 0
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') return print(help())
    if (name === '--version' || name === '-v') return print(version())
    const command = COMMANDS.find((c) => c.name === name)
    if (command === undefined) throw new UsageError(`unknown command "${name}"; run ttt-video --help`)
    if (rest.includes('--help')) return print(`Usage: ${command.usage}`)
    const { values, positionals } = parse(rest, command.flags)
    return await command.run(positionals, values)
  } catch (e) {
    return report(e, argv)
  }
}

// A reader that stops early (`ttt-video config show | head`) closes our stdout: stop quietly, as Unix
// tools do, instead of crashing on the write error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0)
  throw e
})
process.exitCode = await main(process.argv.slice(2))
