/**
 * Opens one bridge: spawns Python, imports the facade, and assembles the PythonBridge from the pieces
 * (liveness.ts, call.ts, queue.ts).
 */
import type { ChildProcess } from 'node:child_process'
import { resolveVenvDir, venvPython } from '../paths.js'
import { sendCall } from './call.js'
import { PythonBridgeError } from './errors.js'
import { holdWhileBusy, type Liveness, type LoopHold, watchProcess } from './liveness.js'
import {
  describePythoniaError,
  FACADE,
  type PyFacade,
  type Pythonia,
  releasePython,
  spawnPython,
} from './pythonia.js'
import { CallQueue } from './queue.js'
import type { BridgeOptions, CallOptions, PythonBridge } from './types.js'

/** The Python process of one bridge, as Node tracks it. */
interface Child {
  /** The interpreter it runs. */
  python: string
  proc: ChildProcess
  life: Liveness
  loop: LoopHold
}

/** Starts a Python process and answers the bridge to it (one per Node process: see shared.ts). */
export async function openBridge(options: BridgeOptions): Promise<PythonBridge> {
  const python = options.python ?? venvPython(resolveVenvDir(options.venvDir))
  const py = await spawnPython(python, options.env ?? {})
  const proc = py.com.proc
  if (!proc) throw new PythonBridgeError(`pythonia did not start ${python}`)
  // Let pythonia forget a dead process, so that a later startBridge() spawns a new one.
  const life = watchProcess(proc, python, () => releasePython(proc))
  const child: Child = { python, proc, life, loop: holdWhileBusy(proc) }
  const facade = await importFacade(py, child, options)
  return assemble(child, facade)
}

/** Imports the facade and prepares Python (sys.path, death with Node); on failure, stops Python. */
async function importFacade(py: Pythonia, child: Child, options: BridgeOptions): Promise<PyFacade> {
  const { python, proc, life, loop } = child
  loop.begin()
  try {
    await life.guard(Promise.resolve(py.python.setFastMode(true)))
    const facade = await life.guard(py.python(FACADE)).catch((e: unknown) => {
      if (e instanceof PythonBridgeError) throw e
      throw new PythonBridgeError(
        `${python} cannot import ${FACADE} (${describePythoniaError(e)}); run \`npx ttt-video setup\``,
        { cause: e },
      )
    })
    if (options.sysPath?.length) await life.guard(facade.add_sys_path(options.sysPath))
    if (process.platform === 'linux') await life.guard(facade.install_parent_death_signal())
    return facade
  } catch (e) {
    life.markClosed()
    releasePython(proc)
    await life.exited
    throw e
  } finally {
    loop.end()
  }
}

/** The PythonBridge over a started child and its facade. */
function assemble(child: Child, facade: PyFacade): PythonBridge {
  const { python, proc, life, loop } = child
  const queue = new CallQueue()
  return {
    python,
    get pid() {
      return life.dead ? undefined : proc.pid
    },
    get closed() {
      return life.dead !== undefined
    },
    call<T>(target: string, args: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<T> {
      loop.begin()
      return queue
        .run(target, opts.signal, () => sendCall<T>(facade, life, target, args, opts))
        .finally(() => loop.end())
    },
    close: () => closeChild(child),
  }
}

/** Stops Python (SIGTERM, then SIGKILL after 5 s), rejecting pending calls; resolves when it is gone. */
async function closeChild({ proc, life }: Child): Promise<void> {
  if (!life.dead) {
    life.markClosed()
    proc.ref() // keep Node alive until Python has gone
    if (!releasePython(proc)) proc.kill('SIGTERM') // releasePython also stops pythonia's interval
    const kill = setTimeout(() => proc.kill('SIGKILL'), 5000)
    await life.exited
    clearTimeout(kill)
  }
  await life.exited
}
