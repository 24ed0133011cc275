// The bridge seen from outside: child Node processes that open a bridge, then exit, close, die or are killed.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { execa } from 'execa'
import ts from 'typescript'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveVenvDir, venvPython } from '../../sdk/python/paths.js'
import { alive, ROOT } from '../helpers.js'

// Real Python (the project's venv, or $TTT_VIDEO_VENV) through real pythonia: no mocks.
const PYTHON = venvPython(resolveVenvDir())
/** The folder of bridge_targets.py, the functions these tests call; the bridge puts it on sys.path. */
const TARGETS = join(ROOT, 'test', 'integration')
const tmp = mkdtempSync(join(tmpdir(), 'ttt-bridge-process-'))

afterAll(() => rmSync(tmp, { recursive: true, force: true }))

async function gone(pid: number, withinMs: number): Promise<boolean> {
  const end = Date.now() + withinMs
  while (Date.now() < end) {
    if (!alive(pid)) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return !alive(pid)
}

/** The child Node process: opens a bridge, then does what its mode says. */
const SCRIPT = `import { startBridge } from './sdk/python/bridge/index.js'
const [mode, python, sysPath] = process.argv.slice(2)
if (mode === 'restart') {
  // The first Python's proxies are collected while the second runs: their ids must not free its objects.
  await (async () => {
    const first = await startBridge({ python, sysPath: [sysPath] })
    await first.call('bridge_targets.echo', { a: 1 })
    await first.close()
  })()
  const second = await startBridge({ python, sysPath: [sysPath] })
  console.log(JSON.stringify({ pid: second.pid }))
  const answers = []
  for (let i = 0; i < 3; i++) {
    globalThis.gc()
    await new Promise((r) => setTimeout(r, 1200)) // pythonia sends the collected ids once a second
    answers.push(await second.call('bridge_targets.echo', { a: i }).catch((e) => String(e)))
  }
  console.log(JSON.stringify({ answers }))
  await second.close()
  process.exit(0)
}
const bridge = await startBridge({ python, sysPath: [sysPath] })
console.log(JSON.stringify({ pid: bridge.pid }))
if (mode === 'close') { await bridge.call('bridge_targets.echo', { a: 1 }); await bridge.close() }
if (mode === 'idle') await bridge.call('bridge_targets.echo', { a: 1 })
if (mode === 'idle-after-progress') await bridge.call('bridge_targets.steps', { n: 2 }, { onProgress: () => {} })
if (mode === 'busy') await bridge.call('bridge_targets.sleep', { seconds: 30 })
if (mode === 'held') {
  // Nothing but the calls keeps Node alive: without the hold it would exit before printing.
  const answers = await Promise.all([
    bridge.call('bridge_targets.sleep', { seconds: 0.5 }),
    bridge.call('bridge_targets.echo', { a: 2 }),
  ])
  console.log(JSON.stringify({ answers }))
}
if (mode === 'close-busy') {
  const pending = bridge.call('bridge_targets.sleep', { seconds: 30 }).catch((e) => e)
  await new Promise((r) => setTimeout(r, 200)) // let the call reach Python (either way it must reject)
  await bridge.close()
  const err = await pending
  console.log(JSON.stringify({ error: err.message, code: err.code, pid: bridge.pid, closed: bridge.closed }))
}
if (mode === 'die') {
  const err = await bridge.call('bridge_targets.die', { code: 7 }).catch((e) => e)
  console.log(JSON.stringify({ error: err.message, code: err.code }))
  const again = await startBridge({ python, sysPath: [sysPath] })
  console.log(JSON.stringify({ again: await again.call('bridge_targets.echo', { a: 1 }), pid: again.pid }))
}
if (mode === 'bad') {}
`

describe('Python bridge process lifetime', () => {
  // Child Node processes run the bridge transpiled from source (no build needed). It sits under
  // node_modules so that `import('pythonia')` resolves.
  const out = join(ROOT, 'node_modules', '.cache', 'ttt-bridge-test', String(process.pid))
  const script = join(out, 'run.mjs')

  beforeAll(() => {
    const bridgeFiles = readdirSync(join(ROOT, 'sdk', 'python', 'bridge')).map((f) => `python/bridge/${f}`)
    for (const file of ['errors.ts', 'python/paths.ts', ...bridgeFiles]) {
      const source = ts.sys.readFile(join(ROOT, 'sdk', file))!
      const js = ts.transpileModule(source, {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      }).outputText
      const dest = join(out, 'sdk', file.replace(/\.ts$/, '.js'))
      mkdirSync(dirname(dest), { recursive: true })
      writeFileSync(dest, js)
    }
    writeFileSync(script, SCRIPT)
  })

  afterAll(() => rmSync(out, { recursive: true, force: true }))

  const runScript = (mode: string, python = PYTHON) =>
    execa('node', ['--expose-gc', script, mode, python, TARGETS], { reject: false, timeout: 15_000 })

  it.each(['close', 'idle', 'idle-after-progress'])(
    'node exits by itself after %s and leaves no Python',
    async (mode) => {
      const started = Date.now()
      const r = await runScript(mode)
      expect(r.exitCode).toBe(0)
      // Python leaves quietly (pythonia's proxies complain when Python outlives Node's end of the channel).
      expect(r.stderr).toBe('')
      expect(Date.now() - started).toBeLessThan(8000)
      const { pid } = JSON.parse(r.stdout.split('\n')[0]!) as { pid: number }
      expect(await gone(pid, 3000)).toBe(true)
    },
  )

  it('calls hold Node open while they run, queued ones included', async () => {
    const r = await runScript('held')
    expect(r.exitCode).toBe(0)
    expect(JSON.parse(r.stdout.split('\n')[1]!)).toEqual({ answers: [0.5, { a: 2 }] })
  })

  it('close() rejects the running call and leaves no Python', async () => {
    const r = await runScript('close-busy')
    expect(r.exitCode).toBe(0)
    const lines = r.stdout.split('\n')
    expect(JSON.parse(lines[1]!)).toEqual({
      error: 'the Python bridge was closed',
      code: 'BRIDGE',
      closed: true,
    })
    expect(await gone(JSON.parse(lines[0]!).pid, 3000)).toBe(true)
  })

  it('a dead Python rejects the pending call at once', async () => {
    const r = await runScript('die')
    expect(r.exitCode).toBe(0)
    const lines = r.stdout.split('\n')
    expect(JSON.parse(lines[1]!)).toEqual({
      error: 'the Python bridge process exited (code 7, signal null)',
      code: 'BRIDGE',
    })
    // A new bridge can be started after that (and Node still exits on its own).
    const again = JSON.parse(lines[2]!) as { again: unknown; pid: number }
    expect(again.again).toEqual({ a: 1 })
    expect(again.pid).not.toBe(JSON.parse(lines[0]!).pid)
  })

  it("a restarted bridge keeps its objects when the first one's proxies are collected", async () => {
    const r = await runScript('restart')
    expect(r.exitCode).toBe(0)
    expect(JSON.parse(r.stdout.split('\n')[1]!)).toEqual({ answers: [{ a: 0 }, { a: 1 }, { a: 2 }] })
  })

  it('Python dies with Node even in the middle of a call', async () => {
    const sub = execa('node', [script, 'busy', PYTHON, TARGETS], { reject: false, buffer: false })
    const first = await new Promise<string>((resolve) => sub.stdout.once('data', (d) => resolve(String(d))))
    const { pid } = JSON.parse(first) as { pid: number }
    expect(alive(pid)).toBe(true)
    sub.kill('SIGKILL')
    await sub
    expect(await gone(pid, 3000)).toBe(true)
  })

  it('a missing interpreter or package fails with a typed error and Node still exits', async () => {
    // An interpreter without site-packages (nor PYTHONPATH): pythonia's half runs, ttt_video does not import.
    const noSite = join(tmp, 'python-no-site')
    writeFileSync(noSite, `#!/bin/sh\nunset PYTHONPATH\nexec ${PYTHON} -S "$@"\n`, { mode: 0o755 })
    const r = await execa(
      'node',
      [
        '--input-type=module',
        '-e',
        `import { startBridge } from ${JSON.stringify(join(out, 'sdk/python/bridge/index.js'))}
for (const python of ['/nonexistent/python', ${JSON.stringify(noSite)}]) {
  const e = await startBridge({ python }).catch((e) => e)
  console.log(e.name + ': ' + e.message)
}`,
      ],
      { reject: false, timeout: 15_000 },
    )
    expect(r.exitCode).toBe(0)
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('PythonBridgeError'))
    expect(lines[0]).toMatch(
      /^PythonBridgeError: the Python bridge could not start \/nonexistent\/python: spawn/,
    )
    expect(lines[1]).toMatch(
      /^PythonBridgeError: .*python-no-site cannot import ttt_video.bridge_facade \(.*No module named 'ttt_video'.*\); run `npx ttt-video setup`/,
    )
  })
})
