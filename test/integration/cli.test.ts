import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { resolveConfig } from '../../sdk/contracts/config/index.js'
import { venvPython } from '../../sdk/python/paths.js'
import { ROOT, shippedConfigs } from '../helpers.js'

// These run the built CLI (`npm run build` first; `npm test` does it) and the real Python runtime.
const CLI = join(ROOT, 'dist', 'cli', 'main.js')
const PYTHON = venvPython(join(ROOT, '.venv'))
const tmp = mkdtempSync(join(tmpdir(), 'ttt-cli-'))
const cli = (...args: string[]) => execa('node', [CLI, ...args], { reject: false, cwd: ROOT })

describe('ttt-video CLI', () => {
  it('validates every shipped config', async () => {
    const r = await cli('config', 'validate', ...shippedConfigs())
    expect(r.exitCode).toBe(0)
    expect(r.stdout.split('\n')).toHaveLength(shippedConfigs().length)
  })

  it('reports a bad config on stderr with its place, exit 1 and no stack trace', async () => {
    const file = join(tmp, 'bad.toml')
    writeFileSync(file, '[model]\nssm_layr = "ttt_mlp"\n')
    const r = await cli('config', 'validate', file)
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain(
      `${file}: model.ssm_layr: unknown field model.ssm_layr; did you mean model.ssm_layer?`,
    )
    expect(r.stderr).not.toMatch(/\n\s+at /)
    expect(r.stdout).toBe('') // nothing but the error, and that on stderr
    const verbose = await cli('config', 'validate', file, '--verbose')
    expect(verbose.stderr).toMatch(/\n\s+at /)
  })

  it('config show prints the resolved TOML after overrides', async () => {
    const r = await cli(
      'config',
      'show',
      'configs/eval/ttt-mlp/9s.toml',
      '--set',
      'eval.num_denoising_steps=20',
    )
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toMatch(/num_denoising_steps = 20/)
    expect(r.stdout).toMatch(/sampling_num_frames = 37/)
    const json = await cli('config', 'show', '--json', '--set', 'model.ssm_layer=ttt_linear')
    expect(JSON.parse(json.stdout).model.ssm_layer).toBe('ttt_linear')
  })

  it('checks the mesh against a world size', async () => {
    const r = await cli('config', 'validate', 'configs/eval/ttt-mlp/63s.toml', '--world-size', '1')
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain(
      'parallelism: dp_replicate x dp_sharding x tp_sharding x cfg_parallel = 1 x 1 x 2 x 1 = 2',
    )
  })

  it('config schema prints the JSON Schema', async () => {
    const r = await cli('config', 'schema')
    expect(JSON.parse(r.stdout).$defs.JobConfig.properties.model.properties.ssm_layer.enum).toEqual([
      'ttt_mlp',
      'ttt_linear',
      'none',
    ])
  })

  it('storyboard check shows the T5 prompts, and rejects a wrong segment count', async () => {
    const ok = await cli(
      'storyboard',
      'check',
      'examples/storyboards/tom-and-jerry-9s.json',
      '--config',
      'configs/eval/ttt-mlp/9s.toml',
      '--json',
    )
    expect(ok.exitCode).toBe(0)
    const videos = JSON.parse(ok.stdout).videos as { prompts: string[] }[]
    expect(videos[0]!.prompts[1]!.startsWith('<start_scene>')).toBe(true)
    const bad = await cli(
      'storyboard',
      'check',
      'examples/storyboards/tom-and-jerry-9s.json',
      '--config',
      'configs/eval/ttt-mlp/3s.toml',
    )
    expect(bad.exitCode).toBe(1)
    expect(bad.stderr).toMatch(/video\[0\]: has 3 segments but the config needs 1/)
  })

  it('usage errors exit 2', async () => {
    expect((await cli('frobnicate')).exitCode).toBe(2)
    expect((await cli('config', 'validate')).exitCode).toBe(2)
    expect((await cli('storyboard', 'check', 'x.json')).exitCode).toBe(2)
  })

  it('setup is idempotent: a second run with nothing to do takes seconds', async () => {
    const started = performance.now()
    const r = await cli('setup')
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toMatch(/unchanged/)
    expect(performance.now() - started).toBeLessThan(30_000)
  })

  it('doctor --json reports the runtime', async () => {
    const r = await cli('doctor', '--json')
    const report = JSON.parse(r.stdout)
    expect(report.venv.exists).toBe(true)
    expect(report.python.torch.version).toMatch(/^2\./)
    expect(report.python.packages.transformers).toBeTruthy()
    expect(report.ffmpeg.path).toBeTruthy()
    expect(r.exitCode).toBe(report.findings.some((f: { level: string }) => f.level === 'problem') ? 1 : 0)
    const venv = join(tmp, 'no-venv')
    const missing = await cli('doctor', '--json', '--venv', venv)
    expect(missing.exitCode).toBe(1)
    // the fix names the same --venv, or it would set up another environment
    expect(JSON.parse(missing.stdout).findings[0]).toMatchObject({
      level: 'problem',
      fix: `ttt-video setup --venv ${venv}`,
    })
  })
})

describe('bad inputs end quickly with a clear error (the new-user trial)', () => {
  const story = 'examples/storyboards/puppy-3s.jsonl'

  it('an output folder that cannot be created (/proc) fails at once, naming where and how to fix it', async () => {
    const started = performance.now()
    const r = await cli('generate', story, '--out', '/proc/x/y', '--dry-run')
    const real = await cli('generate', story, '--out', '/proc/x/y')
    expect(performance.now() - started).toBeLessThan(30_000)
    expect(r.exitCode).toBe(0) // --dry-run writes nothing
    expect(real.exitCode).toBe(1)
    expect(real.stderr).toMatch(
      /cannot create \/proc\/x\/y\/\S*: .* at \/proc\/x .*; choose a folder you can write to/,
    )
  })

  it('a config typo is reported before the missing model', async () => {
    const file = join(tmp, 'typo.toml')
    writeFileSync(file, '[model]\nssm_layr = "ttt_mlp"\n')
    const r = await cli('generate', story, '--config', file)
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain('unknown field model.ssm_layr; did you mean model.ssm_layer?')
  })

  it('with --json, errors before the launch are JSON too', async () => {
    const r = await cli('generate', story, '--json', '--set', 'eval.num_denoising_steps=0')
    expect(r.exitCode).toBe(1)
    expect(JSON.parse(r.stdout)).toMatchObject({
      type: 'error',
      code: 'CONFIG',
      issues: [
        {
          path: 'eval.num_denoising_steps',
          message: 'must be an integer from 1 to 1000, got 0 (in --set eval.num_denoising_steps=0)',
        },
      ],
    })
    const usage = await cli('generate', '--json')
    expect([usage.exitCode, JSON.parse(usage.stdout).code]).toEqual([2, 'USAGE'])
  })

  it('storyboard check takes a preset', async () => {
    const r = await cli(
      'storyboard',
      'check',
      'examples/storyboards/tom-and-jerry-9s.json',
      '--preset',
      'ttt-mlp/9s',
    )
    expect([r.exitCode, r.stdout]).toEqual([0, expect.stringContaining('2 videos of 3 segments (ok)')])
  })
})

describe('TypeScript and Python resolve configs identically', () => {
  it.each(shippedConfigs())('%s', async (file) => {
    const set = ['eval.num_denoising_steps=20', 'guider.schedule=cosine']
    const ts = resolveConfig({ file: join(ROOT, file), set })
    const py = await execa(PYTHON, [
      '-m',
      'ttt_video',
      'config',
      'validate',
      '--json',
      join(ROOT, file),
      ...set.flatMap((s) => ['--set', s]),
    ])
    const result = JSON.parse(py.stdout) as { ok: boolean; config: unknown }
    expect(result.ok).toBe(true)
    expect(result.config).toEqual(JSON.parse(JSON.stringify(ts)))
  })
})
