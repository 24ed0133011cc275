import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { execa } from 'execa'
import ts from 'typescript'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type ConvertProgress,
  callPython,
  convertWeights,
  getBridge,
  inspectBundle,
  type PythonBridge,
  PythonBridgeError,
  PythonCallError,
  PythonCancelledError,
  PythonTimeoutError,
  startBridge,
} from '../../sdk/runtime/bridge.js'
import { venvPython } from '../../sdk/runtime/paths.js'
import { alive, ROOT } from '../helpers.js'

// Real Python (the project's venv) through real pythonia: no mocks.
const PYTHON = venvPython(join(ROOT, '.venv'))
const tmp = mkdtempSync(join(tmpdir(), 'ttt-bridge-'))

// Targets for the tests, imported from a folder the bridge puts on sys.path.
writeFileSync(
  join(tmp, 'bridge_targets.py'),
  `
import os, time
LAST = {}

def nan_values():
    return {"nan": float("nan"), "inf": float("inf"), "list": [1.5, float("-inf")], "ok": 2.5}

def fail(what):
    raise ValueError(f"bad value: {what}")

def steps(n, progress=None, sleep=0.0):
    LAST.clear()
    try:
        for i in range(n):
            if progress is not None:
                progress({"step": i, "total": n, "loss": float("nan") if i == 0 else i / n})
            LAST["step"] = i
            time.sleep(sleep)
    except BaseException as e:
        LAST["error"] = type(e).__name__
        raise
    return n

def last():
    return LAST

def echo(**kwargs):
    return kwargs

def pid():
    return os.getpid()

def sleep(seconds):
    time.sleep(seconds)
    return seconds

def die(code):
    os._exit(code)

def returns_bytes():
    return b"abc"
`,
)

afterAll(() => rmSync(tmp, { recursive: true, force: true }))

async function gone(pid: number, withinMs: number): Promise<boolean> {
  const end = Date.now() + withinMs
  while (Date.now() < end) {
    if (!alive(pid)) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return !alive(pid)
}

describe('Python bridge', () => {
  let bridge: PythonBridge

  beforeAll(async () => {
    bridge = await startBridge({ python: PYTHON, sysPath: [tmp] })
  })
  afterAll(async () => {
    await bridge?.close()
  })

  it('runs doctor_report through the bridge', async () => {
    const { doctorViaBridge } = await import('../../sdk/runtime/bridge.js')
    const report = await doctorViaBridge({ diskPath: tmp })
    expect(report.python.executable).toContain('.venv')
    expect(report.torch.version).toMatch(/^2\./)
    expect(report.disk.path).toBe(tmp)
  })

  it('refuses a second bridge in the same process; getBridge and callPython share the open one', async () => {
    await expect(startBridge({ python: PYTHON })).rejects.toBeInstanceOf(PythonBridgeError)
    const [a, b] = await Promise.all([getBridge(), getBridge()])
    expect(a).toBe(bridge)
    expect(b).toBe(bridge)
    expect(await callPython('bridge_targets.pid')).toBe(bridge.pid)
  })

  it('inspects a model bundle built here', async () => {
    const { inspectBundle } = await import('../../sdk/runtime/bridge.js')
    const bundle = join(tmp, 'bundle')
    for (const c of ['transformer', 'vae', 'text_encoder']) {
      mkdirSync(join(bundle, c), { recursive: true })
      writeFileSync(join(bundle, c, 'config.json'), JSON.stringify({ _class_name: c, layers: 2 }))
    }
    mkdirSync(join(bundle, 'tokenizer'))
    writeFileSync(join(bundle, 'tokenizer', 'spiece.model'), 'x')
    await execa(PYTHON, [
      '-c',
      `import sys, numpy as np
from safetensors.numpy import save_file
d = sys.argv[1]
save_file({"w": np.zeros((4, 8), np.float16), "b": np.zeros(4, np.float32)}, d + "/transformer/model.safetensors")
save_file({"w": np.zeros((3, 3), np.float16)}, d + "/vae/model.safetensors")
save_file({"w": np.zeros((2, 2), np.float32)}, d + "/text_encoder/model.safetensors")`,
      bundle,
    ])
    const info = await inspectBundle(bundle)
    expect(info.complete).toBe(true)
    expect(info.problems).toEqual([])
    expect(info.components.transformer.config).toEqual({ _class_name: 'transformer', layers: 2 })
    expect(info.components.transformer.safetensors).toMatchObject({
      tensors: 2,
      parameters: 36,
      bytes: 32 * 2 + 4 * 4,
      dtypes: { F16: 1, F32: 1 },
    })
    expect(info.components.tokenizer.files).toEqual(['spiece.model'])
  })

  it('returns JSON values, with NaN and infinities as null', async () => {
    expect(await bridge.call('bridge_targets.nan_values')).toEqual({
      nan: null,
      inf: null,
      list: [1.5, null],
      ok: 2.5,
    })
    expect(
      await bridge.call('bridge_targets.echo', { a: [1, 'x', null], b: { c: true }, n: Number.NaN }),
    ).toEqual({ a: [1, 'x', null], b: { c: true }, n: null })
  })

  it('turns a Python exception into PythonCallError with its traceback', async () => {
    const err = await bridge.call('bridge_targets.fail', { what: 'xyz' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PythonCallError)
    const e = err as PythonCallError
    expect(e.pythonType).toBe('ValueError')
    expect(e.pythonMessage).toBe('bad value: xyz')
    expect(e.message).toBe('bridge_targets.fail raised ValueError: bad value: xyz')
    expect(e.code).toBe('PYTHON')
    expect(e.traceback).toMatch(
      /Traceback[\s\S]*bridge_targets\.py", line \d+, in fail[\s\S]*ValueError: bad value/,
    )
    const bytes = await bridge.call('bridge_targets.returns_bytes').catch((x: unknown) => x)
    expect((bytes as PythonCallError).pythonType).toBe('TypeError')
    const missing = await bridge.call('bridge_targets.nope').catch((x: unknown) => x)
    expect((missing as PythonCallError).pythonMessage).toContain("has no function 'nope'")
    expect(await bridge.call('bridge_targets.pid')).toBe(bridge.pid) // still alive
  })

  it('delivers progress events (NaN as null)', async () => {
    const events: { step: number; total: number; loss: number | null }[] = []
    const n = await bridge.call(
      'bridge_targets.steps',
      { n: 5 },
      { onProgress: (e) => events.push(e as never) },
    )
    expect(n).toBe(5)
    expect(events.map((e) => e.step)).toEqual([0, 1, 2, 3, 4])
    expect(events[0]!.loss).toBeNull()
    expect(events[4]!.loss).toBeCloseTo(0.8)
  })

  it('cancels cooperatively through an AbortSignal', async () => {
    const ac = new AbortController()
    const seen: number[] = []
    const started = Date.now()
    const err = await bridge
      .call(
        'bridge_targets.steps',
        { n: 1000, sleep: 0.01 },
        {
          signal: ac.signal,
          onProgress: (e) => {
            seen.push((e as { step: number }).step)
            if (seen.length === 5) ac.abort(new Error('user stop'))
          },
        },
      )
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PythonCancelledError)
    expect((err as PythonCancelledError).cause).toEqual(new Error('user stop'))
    expect(Date.now() - started).toBeLessThan(2000)
    expect(seen).toEqual([0, 1, 2, 3, 4])
    // The abort came inside the 5th progress report: Python raised Cancelled there and is free again.
    expect(await bridge.call('bridge_targets.last')).toEqual({ step: 3, error: 'Cancelled' })
    // A call whose signal already fired never reaches Python.
    await expect(bridge.call('bridge_targets.pid', {}, { signal: ac.signal })).rejects.toBeInstanceOf(
      PythonCancelledError,
    )
  })

  it('times out, stops Python at its next step and keeps calls in order', async () => {
    const slow = bridge.call('bridge_targets.steps', { n: 1000, sleep: 0.01 }, { timeoutMs: 200 })
    const next = bridge.call('bridge_targets.last')
    await expect(slow).rejects.toBeInstanceOf(PythonTimeoutError)
    expect((await next) as object).toMatchObject({ error: 'Cancelled' })
  })

  it('converts a tiny CogVideoX snapshot with progress', async () => {
    const snapshot = await callPython<string>('ttt_video.tiny_bundle.make_tiny_snapshot', {
      out: join(tmp, 'snap'),
      seed: 1,
    })
    const events: ConvertProgress[] = []
    const out = await convertWeights(snapshot, join(tmp, 'converted'), {
      ssmLayer: 'ttt_linear',
      onProgress: (e) => {
        events.push(e as ConvertProgress)
      },
    })
    expect(out).toBe(join(tmp, 'converted'))
    expect(events[0]?.type).toBe('convert.started')
    expect(events.at(-1)?.type).toBe('convert.finished')
    expect(events.some((e) => e.type === 'convert.progress' && e.done === e.total)).toBe(true)
    const info = await inspectBundle(out)
    expect(info.complete).toBe(true)
    const failure = await convertWeights(join(tmp, 'nowhere'), join(tmp, 'x')).catch((e: unknown) => e)
    expect(failure).toBeInstanceOf(PythonCallError)
    expect((failure as PythonCallError).pythonType).toBe('ConversionError')
  })

  it('runs concurrent calls one at a time', async () => {
    const order: string[] = []
    await Promise.all([
      bridge
        .call('bridge_targets.steps', { n: 3, sleep: 0.05 }, { onProgress: () => order.push('step') })
        .then(() => order.push('steps done')),
      bridge.call('bridge_targets.echo', { x: 1 }).then(() => order.push('echo done')),
    ])
    expect(order).toEqual(['step', 'step', 'step', 'steps done', 'echo done'])
  })
})

describe('Python bridge process lifetime', () => {
  // Child Node processes run the bridge transpiled from source (no build needed). It sits under
  // node_modules so that `import('pythonia')` resolves.
  const out = join(ROOT, 'node_modules', '.cache', 'ttt-bridge-test', String(process.pid))
  const script = join(out, 'run.mjs')

  beforeAll(() => {
    for (const file of ['errors.ts', 'runtime/paths.ts', 'runtime/bridge.ts']) {
      const source = ts.sys.readFile(join(ROOT, 'sdk', file))!
      const js = ts.transpileModule(source, {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      }).outputText
      const dest = join(out, 'sdk', file.replace(/\.ts$/, '.js'))
      mkdirSync(dirname(dest), { recursive: true })
      writeFileSync(dest, js)
    }
    writeFileSync(
      script,
      `import { startBridge } from './sdk/runtime/bridge.js'
const [mode, python, sysPath] = process.argv.slice(2)
const bridge = await startBridge({ python, sysPath: [sysPath] })
console.log(JSON.stringify({ pid: bridge.pid }))
if (mode === 'close') { await bridge.call('bridge_targets.echo', { a: 1 }); await bridge.close() }
if (mode === 'idle') await bridge.call('bridge_targets.echo', { a: 1 })
if (mode === 'busy') await bridge.call('bridge_targets.sleep', { seconds: 30 })
if (mode === 'die') {
  const err = await bridge.call('bridge_targets.die', { code: 7 }).catch((e) => e)
  console.log(JSON.stringify({ error: err.message, code: err.code }))
  const again = await startBridge({ python, sysPath: [sysPath] })
  console.log(JSON.stringify({ again: await again.call('bridge_targets.echo', { a: 1 }), pid: again.pid }))
}
if (mode === 'bad') {}
`,
    )
  })

  afterAll(() => rmSync(out, { recursive: true, force: true }))

  const runScript = (mode: string, python = PYTHON) =>
    execa('node', [script, mode, python, tmp], { reject: false, timeout: 15_000 })

  it.each(['close', 'idle'])('node exits by itself after %s and leaves no Python', async (mode) => {
    const started = Date.now()
    const r = await runScript(mode)
    expect(r.exitCode).toBe(0)
    expect(Date.now() - started).toBeLessThan(8000)
    const { pid } = JSON.parse(r.stdout.split('\n')[0]!) as { pid: number }
    expect(await gone(pid, 3000)).toBe(true)
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

  it('Python dies with Node even in the middle of a call', async () => {
    const sub = execa('node', [script, 'busy', PYTHON, tmp], { reject: false, buffer: false })
    const first = await new Promise<string>((resolve) => sub.stdout.once('data', (d) => resolve(String(d))))
    const { pid } = JSON.parse(first) as { pid: number }
    expect(alive(pid)).toBe(true)
    sub.kill('SIGKILL')
    await sub
    expect(await gone(pid, 3000)).toBe(true)
  })

  it('a missing interpreter or package fails with a typed error and Node still exits', async () => {
    // An interpreter without site-packages: pythonia's half runs, ttt_video does not import.
    const noSite = join(tmp, 'python-no-site')
    writeFileSync(noSite, `#!/bin/sh\nexec ${PYTHON} -S "$@"\n`, { mode: 0o755 })
    const r = await execa(
      'node',
      [
        '--input-type=module',
        '-e',
        `import { startBridge } from ${JSON.stringify(join(out, 'sdk/runtime/bridge.js'))}
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
