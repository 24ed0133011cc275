/**
 * The Python process's life as Node sees it: its death becomes one rejection that every pending promise
 * races against (pythonia alone would wait forever), and Node's event loop is held only while calls run.
 */
import type { ChildProcess } from 'node:child_process'
import { PythonBridgeError } from './errors.js'

export interface Liveness {
  /** Why the process can no longer answer (it died, failed to start, or was closed); undefined while alive. */
  readonly dead: Error | undefined
  /** Resolves once the process has exited (or, if it never spawned, once that is known). */
  readonly exited: Promise<void>
  /** Races `p` against the death of the process: rejects with `dead` as soon as it dies. */
  guard<T>(p: Promise<T>): Promise<T>
  /** Declares the process closed on purpose: pending and later guards reject with "was closed". */
  markClosed(): void
}

/**
 * Watches `proc` (spawned to run `python`). `onExit` runs when it exits, before pending promises reject
 * (the bridge uses it to let pythonia forget the process).
 */
export function watchProcess(proc: ChildProcess, python: string, onExit: () => void): Liveness {
  let dead: Error | undefined
  let closing = false
  const waiters = new Set<(e: Error) => void>()
  const markDead = (e: Error) => {
    dead ??= e
    for (const reject of waiters) reject(dead)
    waiters.clear()
  }
  const exited = new Promise<void>((resolve) => {
    proc.once('exit', (code, signal) => {
      onExit()
      const why = closing ? 'was closed' : `process exited (code ${code}, signal ${signal})`
      markDead(new PythonBridgeError(`the Python bridge ${why}`))
      resolve()
    })
    proc.on('error', (e) => {
      markDead(
        new PythonBridgeError(`the Python bridge could not start ${python}: ${e.message}`, { cause: e }),
      )
      if (proc.pid === undefined) resolve() // never spawned: no 'exit' follows
    })
  })
  // If Node ends with Python still there (an idle bridge), Python would see the channel close and run its
  // finalizers, where pythonia's proxies print "Exception ignored ... SystemExit" as they fail to reach
  // Node. A signal sent as Node exits ends Python before that (PR_SET_PDEATHSIG covers a killed Node).
  const stopWithNode = () => proc.kill('SIGTERM')
  process.once('exit', stopWithNode)
  void exited.then(() => process.removeListener('exit', stopWithNode))
  return {
    get dead() {
      return dead
    },
    exited,
    guard<T>(p: Promise<T>): Promise<T> {
      if (dead) return Promise.reject(dead)
      let remove!: () => void
      const died = new Promise<never>((_, reject) => {
        waiters.add(reject)
        remove = () => waiters.delete(reject)
      })
      return Promise.race([p, died]).finally(remove)
    },
    markClosed() {
      closing = true
      markDead(new PythonBridgeError('the Python bridge was closed'))
    },
  }
}

/** Counts running calls; holds Node's event loop open (the child and its IPC channel) while any run. */
export interface LoopHold {
  /** A call begins: from now on Node waits for Python. */
  begin(): void
  /** A call has ended: once none runs, an idle bridge no longer keeps Node alive. */
  end(): void
}

export function holdWhileBusy(proc: ChildProcess): LoopHold {
  let busy = 0
  const update = (delta: number) => {
    busy += delta
    if (busy > 0) {
      proc.ref()
      proc.channel?.ref()
    } else {
      proc.unref()
      proc.channel?.unref()
    }
  }
  return { begin: () => update(1), end: () => update(-1) }
}
