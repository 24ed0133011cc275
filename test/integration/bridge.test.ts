import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  callPython,
  closeBridge,
  getBridge,
  inspectBundle,
  type PythonBridge,
  PythonBridgeError,
  PythonCallError,
  PythonCancelledError,
  PythonTimeoutError,
  startBridge,
} from '../../sdk/python/bridge/index.js'
import { doctor } from '../../sdk/python/doctor.js'
import { resolveVenvDir, venvPython } from '../../sdk/python/paths.js'
import { ROOT } from '../helpers.js'

// Real Python (the project's venv, or $TTT_VIDEO_VENV) through real pythonia: no mocks.
const PYTHON = venvPython(resolveVenvDir())
/** The folder of bridge_targets.py, the functions these tests call; the bridge puts it on sys.path. */
const TARGETS = join(ROOT, 'test', 'integration')
const tmp = mkdtempSync(join(tmpdir(), 'ttt-bridge-'))

afterAll(() => rmSync(tmp, { recursive: true, force: true }))

describe('Python bridge', () => {
  let bridge: PythonBridge

  beforeAll(async () => {
    bridge = await startBridge({ python: PYTHON, sysPath: [TARGETS] })
  })
  afterAll(async () => {
    await bridge?.close()
  })

  it('runs doctor_report through the open bridge', async () => {
    const report = await doctor()
    expect(report.python?.python.executable).toContain('.venv')
    expect(report.python?.torch.version).toMatch(/^2\./)
    expect(report.python?.disk.path).toBe(realpathSync(process.cwd()))
    expect(report.findings.map((f) => f.message).join('\n')).not.toMatch(/broken|already runs/)
    // Another venv cannot get its own Python in this process: the report says whose it is.
    const other = join(tmp, 'other-venv')
    mkdirSync(join(other, 'bin'), { recursive: true })
    symlinkSync(PYTHON, join(other, 'bin', 'python'))
    const mixed = await doctor({ venvDir: other })
    expect(mixed.python?.torch.version).toBe(report.python?.torch.version)
    expect(mixed.findings).toContainEqual({
      level: 'note',
      message: expect.stringContaining(`already runs ${PYTHON}`),
    })
    expect(bridge.closed).toBe(false)
  })

  it('refuses a second bridge in the same process; getBridge and callPython share the open one', async () => {
    await expect(startBridge({ python: PYTHON })).rejects.toBeInstanceOf(PythonBridgeError)
    const [a, b] = await Promise.all([getBridge(), getBridge()])
    expect(a).toBe(bridge)
    expect(b).toBe(bridge)
    expect(await callPython('bridge_targets.pid')).toBe(bridge.pid)
  })

  it('inspects a model bundle built here', async () => {
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

  it('a queued call whose signal fires rejects at once and never reaches Python', async () => {
    const ac = new AbortController()
    const order: string[] = []
    const first = bridge
      .call(
        'bridge_targets.steps',
        { n: 3, sleep: 0.05 },
        // The first call is running in Python when the queued one is aborted.
        { onProgress: (e) => (e as { step: number }).step === 0 && ac.abort(new Error('never mind')) },
      )
      .then(() => order.push('first done'))
    const queued = bridge
      .call('bridge_targets.mark', { tag: 'queued' }, { signal: ac.signal })
      .catch((e: unknown) => {
        order.push('queued rejected')
        return e
      })
    const err = await queued
    expect(err).toBeInstanceOf(PythonCancelledError)
    expect((err as PythonCancelledError).cause).toEqual(new Error('never mind'))
    await first
    expect(order).toEqual(['queued rejected', 'first done'])
    expect(await bridge.call('bridge_targets.marks')).toEqual([])
  })

  it('a throwing progress listener stops Python and rejects the call with its error', async () => {
    const boom = new Error('listener broke')
    const err = await bridge
      .call(
        'bridge_targets.steps',
        { n: 100, sleep: 0.01 },
        {
          onProgress: (e) => {
            if ((e as { step: number }).step === 2) throw boom
          },
        },
      )
      .catch((e: unknown) => e)
    expect(err).toBe(boom)
    expect(await bridge.call('bridge_targets.last')).toEqual({ step: 1, error: 'Cancelled' })
  })

  it('times out, stops Python at its next step and keeps calls in order', async () => {
    const slow = bridge.call('bridge_targets.steps', { n: 1000, sleep: 0.01 }, { timeoutMs: 200 })
    const next = bridge.call('bridge_targets.last')
    await expect(slow).rejects.toBeInstanceOf(PythonTimeoutError)
    expect((await next) as object).toMatchObject({ error: 'Cancelled' })
  })

  it('builds a tiny bundle and inspects it; a Python exception keeps its type', async () => {
    const out = await callPython<string>('ttt_video.demo.tiny_bundle.make_tiny_bundle', {
      out: join(tmp, 'tiny'),
      seed: 1,
      ssm_layer: 'ttt_linear',
    })
    expect(out).toBe(join(tmp, 'tiny'))
    const info = await inspectBundle(out)
    expect(info.complete).toBe(true)
    expect(info.components.transformer.safetensors?.tensors).toBeGreaterThan(0)
    const failure = await callPython('ttt_video.weights.convert.convert_diffusers', {
      src: join(tmp, 'nowhere'),
      dst: join(tmp, 'x'),
    }).catch((e: unknown) => e)
    expect(failure).toBeInstanceOf(PythonCallError)
    expect((failure as PythonCallError).pythonType).toBe('WeightsMissingError')
    expect((failure as PythonCallError).code).toBe('WEIGHTS_MISSING')
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

describe('doctor without a working bridge', () => {
  // Runs after the first describe closed its bridge: each doctor() here may start (and must close) its own.
  afterAll(async () => {
    await closeBridge()
  })

  it('reports a broken environment as a problem with a fix, and a missing one too', async () => {
    const broken = join(tmp, 'broken-venv')
    mkdirSync(join(broken, 'bin'), { recursive: true })
    writeFileSync(join(broken, 'bin', 'python'), `#!/bin/sh\nunset PYTHONPATH\nexec ${PYTHON} -S "$@"\n`, {
      mode: 0o755,
    })
    const report = await doctor({ venvDir: broken })
    expect(report.python).toBeNull()
    expect(report.findings).toContainEqual({
      level: 'problem',
      message: expect.stringMatching(
        /^the Python environment at .*broken-venv is broken: .*cannot import ttt_video/,
      ),
      fix: `ttt-video setup --venv ${broken} --force`, // the fix names the environment asked about
    })
    const dies = join(tmp, 'dying-venv')
    mkdirSync(join(dies, 'bin'), { recursive: true })
    writeFileSync(join(dies, 'bin', 'python'), '#!/bin/sh\nexit 3\n', { mode: 0o755 })
    const died = await doctor({ venvDir: dies })
    expect(died.findings).toContainEqual({
      level: 'problem',
      message: expect.stringMatching(/dying-venv is broken: .*(exited \(code 3|could not start)/),
      fix: `ttt-video setup --venv ${dies} --force`,
    })
    const missing = await doctor({ venvDir: join(tmp, 'no-venv') })
    expect(missing.findings[0]).toMatchObject({
      level: 'problem',
      fix: `ttt-video setup --venv ${join(tmp, 'no-venv')}`,
    })
  })
})
