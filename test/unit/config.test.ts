import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { renderGeneratedFiles } from '../../sdk/contracts/codegen.js'
import {
  configToToml,
  JobConfigSchema,
  parseConfigText,
  parseSetArgs,
  resolveConfig,
  segmentCount,
  tokensPerFrame,
  validateConfig,
} from '../../sdk/contracts/config/index.js'
import { ConfigError } from '../../sdk/errors.js'
import { type BadConfig, ROOT, readCases, shippedConfigs } from '../helpers.js'

const tmp = mkdtempSync(join(tmpdir(), 'ttt-config-'))
function writeTemp(name: string, content: string | Buffer): string {
  const file = join(tmp, name)
  writeFileSync(file, content)
  return file
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (e) {
    if (e instanceof ConfigError) return e
    throw new Error(`expected a ConfigError, got ${e}`)
  }
  throw new Error('expected a ConfigError, nothing was thrown')
}

describe('defaults', () => {
  it('are the reference defaults (spec 1.2) plus the project fields', () => {
    const c = JobConfigSchema.parse({})
    expect(c.job).toMatchObject({ exp_name: 'default job', seed: 42 })
    expect(c.model).toMatchObject({
      size: '5B',
      video_length: '3sec',
      ssm_layer: 'ttt_mlp',
      ttt_base_lr: 0.1,
      mini_batch_size: 64,
    })
    expect(c.eval).toMatchObject({
      image_width: 720,
      image_height: 480,
      sampling_fps: 16,
      sampling_num_frames: 13,
      num_denoising_steps: 50,
      txt_maxlen: 498,
      dtype: 'bfloat16',
      vae_scale_factor: 1.0,
      sampler: 'dpmpp_2m_sde',
      cfg_batch: true,
    })
    expect(c.guider).toEqual({ scale: 6, exp: 5, num_steps: 50, schedule: 'reference' })
    expect(c.parallelism).toMatchObject({ dp_sharding: 8, dp_replicate: 1, tp_sharding: 1, cfg_parallel: 1 })
    expect(c.remat.scan_checkpoint_group_size).toBe(16)
    expect(c.comm.init_timeout_seconds).toBe(1200)
    expect(c.faithfulness).toEqual({
      ttt_lr_alignment: 'reference',
      reverse_pairing: 'reference',
      timestep_bf16: 'auto',
      rope_bf16: 'auto',
      sigma_quantization: true,
    })
    expect(segmentCount(c)).toBe(1)
    expect(tokensPerFrame(c)).toBe(1350)
  })
})

describe('precedence', () => {
  it('is --set > overrides object > file > defaults', () => {
    const file = writeTemp('p.toml', '[eval]\nnum_denoising_steps = 30\nsampling_fps = 8\n[job]\nseed = 7\n')
    const c = resolveConfig({
      file,
      overrides: { eval: { num_denoising_steps: 20, sampling_fps: 12 } },
      set: ['eval.num_denoising_steps=10'],
    })
    expect(c.eval.num_denoising_steps).toBe(10)
    expect(c.eval.sampling_fps).toBe(12)
    expect(c.job.seed).toBe(7)
    expect(c.job.config_file).toBe(file)
    expect(c.eval.image_width).toBe(720)
  })

  it('coerces --set values by the field type', () => {
    expect(
      parseSetArgs([
        'eval.num_denoising_steps=20',
        'eval.cfg_batch=false',
        'model.ssm_layer=ttt_linear',
        'guider.scale=4.5',
        'checkpoint.model_dir=null',
        'job.exp_name=42',
      ]),
    ).toEqual({
      eval: { num_denoising_steps: 20, cfg_batch: false },
      model: { ssm_layer: 'ttt_linear' },
      guider: { scale: 4.5 },
      checkpoint: { model_dir: null },
      job: { exp_name: '42' },
    })
  })
})

describe('TOML', () => {
  it('round-trips a resolved config through configToToml', () => {
    const c = resolveConfig({ file: join(ROOT, 'configs/eval/ttt-mlp/9s.toml') })
    const again = validateConfig(parseConfigText(configToToml(c)))
    expect(again).toEqual(c)
  })

  it('names the file, line and column of a parse error', () => {
    const file = writeTemp('bad.toml', '[model]\nssm_layer = "ttt_mlp"\n[eval\n')
    const e = configError(() => resolveConfig({ file }))
    expect(e.issues[0]?.line).toBe(3)
    expect(e.message).toMatch(
      new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:\\d+: invalid TOML`),
    )
  })

  it('reports a missing file and a folder', () => {
    expect(configError(() => resolveConfig({ file: join(tmp, 'nope.toml') })).message).toMatch(/ENOENT/)
    expect(configError(() => resolveConfig({ file: tmp })).message).toMatch(/folder/)
  })
})

describe('shipped configs', () => {
  const files = shippedConfigs()
  it('exist for every variant and length', () => {
    for (const kind of ['eval', 'train']) {
      for (const variant of ['ttt-linear', 'ttt-mlp']) {
        for (const len of ['3s', '9s', '18s', '30s', '63s'])
          expect(files).toContain(`configs/${kind}/${variant}/${len}.toml`)
      }
    }
    expect(files).toContain('configs/eval/cogvideox/3s.toml')
  })

  it.each(files)('%s is valid', (file) => {
    const c = resolveConfig({ file: join(ROOT, file) })
    if (file.startsWith('configs/eval/ttt-')) {
      const n = segmentCount(c)!
      expect((n * c.eval.txt_maxlen + c.eval.sampling_num_frames * tokensPerFrame(c)) % 64).toBe(0)
      expect(c.model.mini_batch_size).toBe(file.includes('ttt-mlp') ? 64 : 16)
    }
  })

  it('eval presets follow spec 1.4', () => {
    const table = {
      '3s': [13, 498, 1],
      '9s': [37, 502, 1],
      '18s': [73, 471, 1],
      '30s': [121, 497, 1],
      '63s': [253, 458, 2],
    }
    for (const [len, [frames, maxlen, tp]] of Object.entries(table)) {
      const c = resolveConfig({ file: join(ROOT, `configs/eval/ttt-linear/${len}.toml`) })
      expect([c.eval.sampling_num_frames, c.eval.txt_maxlen, c.parallelism.tp_sharding]).toEqual([
        frames,
        maxlen,
        tp,
      ])
      expect(c.model.ttt_base_lr).toBe(1.0)
    }
  })
})

describe('bad configs (test/vectors/bad-configs.jsonl)', () => {
  const configs = readCases<BadConfig>('bad-configs.jsonl')
  it('has a corpus large enough to matter', () => {
    expect(configs.length).toBeGreaterThanOrEqual(30)
  })
  it.each(configs.map((c) => [c.name, c] as const))('%s', (_name, vector) => {
    const file = writeTemp(
      `${vector.name.replace(/\W+/g, '_')}.toml`,
      vector.toml_base64 !== undefined ? Buffer.from(vector.toml_base64, 'base64') : vector.toml!,
    )
    const e = configError(() =>
      resolveConfig({
        file,
        set: vector.set ?? [],
        ...(vector.world_size !== undefined ? { worldSize: vector.world_size } : {}),
        checkPaths: vector.check_paths === true,
      }),
    )
    expect(e.issues.map((i) => i.path)).toContain(vector.path)
    const issue = e.issues.find((i) => i.path === vector.path)!
    if (vector.line !== undefined) expect(issue.line).toBe(vector.line)
    if (vector.suggest !== undefined) expect(issue.message).toContain(vector.suggest)
    expect(issue.message.length).toBeGreaterThan(10)
    // A bad --set is a command-line problem, not the file's.
    expect(e.message).toContain(vector.set ? '--set' : file)
  })
})

describe('generated files', () => {
  it('every file generated from the contracts is fresh (run `npm run codegen`)', () => {
    for (const [file, content] of Object.entries(renderGeneratedFiles())) {
      expect(readFileSync(join(ROOT, file), 'utf8'), `${file} is stale: run npm run codegen`).toBe(content)
    }
  })
})

describe('bad --set values (test/vectors/bad-set-args.jsonl)', () => {
  const cases = readCases<{ name: string; set: string; code: string; path: string; message: string }>(
    'bad-set-args.jsonl',
  )
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const e = configError(() => parseSetArgs([c.set]))
    expect(e.code).toBe(c.code)
    expect(e.issues).toEqual([{ path: c.path, message: `${c.message} (in --set ${c.set})` }])
  })
})
