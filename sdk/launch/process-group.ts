import { execa, type ResultPromise } from 'execa'

// A child process that leads its own process group, so that it ends as a whole (torchrun, its workers,
// their helpers): on cancel(), and when this process ends for any reason Node lets us see: exit,
// SIGTERM, SIGHUP, SIGINT. The Python side adds its own safeguard (a worker exits when its parent dies,
// python/ttt_video/lifecycle.py), which covers SIGKILL of this process too.

export interface GroupOptions {
  env?: Record<string, string>
  cwd?: string
}

export interface ProcessGroup {
  readonly pid: number | undefined
  readonly child: ResultPromise
  /** Signals the whole group (no-op once it is gone). */
  kill(signal: NodeJS.Signals): void
  /** SIGTERM now, SIGKILL after `graceSeconds` if anything is left. */
  terminate(graceSeconds: number): void
  /** Stops watching the group (after it has exited). */
  release(): void
}

const live = new Set<ProcessGroup>()
const FATAL_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGINT']
let installed = false

function killAll(signal: NodeJS.Signals): void {
  for (const group of live) group.kill(signal)
}

/**
 * On a fatal signal: end every group, then behave as Node would have without us (exit with 128 + n)
 * unless the program handles the signal itself.
 */
function onFatalSignal(signal: NodeJS.Signals): void {
  killAll('SIGTERM')
  const killer = setTimeout(() => killAll('SIGKILL'), 2000)
  killer.unref()
  if (process.listenerCount(signal) > 1) return
  killAll('SIGKILL')
  uninstall()
  process.kill(process.pid, signal)
}

function install(): void {
  if (installed) return
  installed = true
  process.on('exit', exitHandler)
  for (const signal of FATAL_SIGNALS) process.on(signal, onFatalSignal)
}

function uninstall(): void {
  installed = false
  process.removeListener('exit', exitHandler)
  for (const signal of FATAL_SIGNALS) process.removeListener(signal, onFatalSignal)
}

function exitHandler(): void {
  killAll('SIGKILL')
}

/** Starts `command` as the leader of a new process group, watched until `release()`. */
export function spawnGroup(command: readonly string[], options: GroupOptions = {}): ProcessGroup {
  const [file, ...args] = command as [string, ...string[]]
  const child = execa(file, args, {
    detached: true,
    reject: false,
    buffer: false,
    stdin: 'ignore',
    env: options.env ?? {},
    ...(options.cwd ? { cwd: options.cwd } : {}),
  })
  const kill = (signal: NodeJS.Signals) => {
    if (child.pid === undefined) return
    try {
      process.kill(-child.pid, signal)
    } catch {
      // already gone
    }
  }
  const group: ProcessGroup = {
    pid: child.pid,
    child,
    kill,
    terminate(graceSeconds) {
      kill('SIGTERM')
      setTimeout(() => kill('SIGKILL'), graceSeconds * 1000).unref()
    },
    release() {
      live.delete(group)
      if (live.size === 0) uninstall()
    },
  }
  live.add(group)
  install()
  return group
}

/** The groups still running (for tests and for a CLI that shuts down). */
export function liveGroups(): number {
  return live.size
}
