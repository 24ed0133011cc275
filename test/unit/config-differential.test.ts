import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { readConfigFile } from '../../sdk/contracts/config/load.js'
import { formatNumber } from '../../sdk/contracts/config/messages.js'
import { type ConfigObject, mergeConfigObjects, parseSetArgs } from '../../sdk/contracts/config/overrides.js'
import { fieldNames, SECTION_NAMES, type SectionName } from '../../sdk/contracts/config/schema.js'
import { fieldJsonSchemas, validateConfig } from '../../sdk/contracts/config/validate.js'
import type { RunKind } from '../../sdk/contracts/events.js'
import { ConfigError } from '../../sdk/errors.js'
import { venvPythonFor } from '../../sdk/python/paths.js'
import { ROOT, shippedConfigs } from '../helpers.js'

// The cross-field rules exist once, as data, and two evaluators read them (TypeScript and Python). This
// test makes sure the two agree: thousands of generated configs (valid ones, and ones at the edge of
// every rule and every field constraint) go through both validators, which must give the same verdict,
// the same field paths and the same messages.

/** mulberry32: a small seeded generator, so the cases are the same on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const rand = random(20261130)
const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!
const BASES = shippedConfigs().map((file) => readConfigFile(join(ROOT, file)))

/** Values at and beyond the edge of a field's own constraint, plus values of the wrong type. */
function edgeValues(section: SectionName, field: string): unknown[] {
  const s = fieldJsonSchemas()[section]![field] as Record<string, unknown>
  const values: unknown[] = [null, 'text', true, [1], { a: 1 }, 0.5, -1, 1e21, 1e-7]
  for (const key of ['minimum', 'maximum', 'exclusiveMinimum']) {
    const bound = s[key] as number | undefined
    if (bound !== undefined && Math.abs(bound) < 1e15) values.push(bound - 1, bound, bound + 1, bound + 0.25)
  }
  for (const options of [
    s.enum as unknown[] | undefined,
    ...((s.anyOf as { enum?: unknown[] }[]) ?? []).map((a) => a.enum),
  ])
    if (options) values.push(...options, `${String(options[0])}x`)
  return values
}

/** Values near the edges of the cross-field rules (rules.ts). */
const RULE_EDGES: [SectionName, string, () => unknown][] = [
  ['eval', 'sampling_num_frames', () => 12 * Math.floor(rand() * 22) + pick([0, 1, 1, 2, -1])],
  ['eval', 'image_width', () => 16 * Math.floor(1 + rand() * 60) + pick([0, 0, 1, 8, -8, 7])],
  ['eval', 'image_height', () => 16 * Math.floor(1 + rand() * 40) + pick([0, 0, 1, 8, -7])],
  ['eval', 'txt_maxlen', () => Math.floor(1 + rand() * 600)],
  ['model', 'mini_batch_size', () => pick([1, 8, 16, 32, 64, 7, 48, 100])],
  ['model', 'video_length', () => pick(['3sec', '9sec', '18sec', '30sec', '63sec'])],
  ['model', 'ssm_layer', () => pick(['ttt_mlp', 'ttt_linear', 'none'])],
  ['model', 'size', () => pick(['5B', 'debug', 'tiny'])],
  ['parallelism', 'tp_sharding', () => pick([1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 48, 96])],
  ['parallelism', 'dp_sharding', () => pick([1, 2, 3, 8])],
  ['parallelism', 'dp_replicate', () => pick([1, 2, 4])],
  ['parallelism', 'cfg_parallel', () => pick([1, 2])],
  ['remat', 'shard_transformer_inputs', () => pick([true, false])],
  ['training', 'global_batch_size', () => pick([1, 2, 3, 4, 6, 8, 64])],
  ['training', 'grad_accum_steps', () => pick([1, 2, 3, 4])],
  ['training', 'warmup_steps', () => pick([0, 10, 100, 6000])],
  ['training', 'dataset_path', () => pick([null, 'data'])],
]

function ruleCase(): ConfigObject {
  const changes: ConfigObject = {}
  for (let i = 0; i < 1 + Math.floor(rand() * 4); i++) {
    const [section, field, value] = pick(RULE_EDGES)
    changes[section] = { ...(changes[section] ?? {}), [field]: value() }
  }
  return mergeConfigObjects(pick(BASES), changes)
}

function fieldCase(): ConfigObject {
  const section = pick(SECTION_NAMES)
  const field = pick(fieldNames(section))
  const value = pick(edgeValues(section, field))
  const typo = rand() < 0.1 ? { [`${field.slice(0, -1)}`]: 1 } : {}
  return mergeConfigObjects(pick(BASES), { [section]: { [field]: value, ...typo } } as ConfigObject)
}

function shapeCase(): unknown {
  return pick([
    { evall: { x: 1 } },
    { eval: 3 },
    { eval: { sampling_fpss: 8 } },
    { Eval: {} },
    { job: [] },
    {},
  ])
}

interface Case {
  raw?: unknown
  world_size?: number | null
  run_kind?: RunKind | null
  set?: string[]
  number?: number
}

function cases(): Case[] {
  const out: Case[] = []
  for (let i = 0; i < 1500; i++) {
    const kind = rand()
    const raw = kind < 0.55 ? ruleCase() : kind < 0.95 ? fieldCase() : shapeCase()
    const runKind = pick<RunKind | null>(['train', 'prepare', null, null, null, null])
    out.push({ raw, world_size: rand() < 0.3 ? pick([1, 2, 3, 4, 6, 8, 16]) : null, run_kind: runKind })
  }
  const texts = [
    '0',
    '-1',
    '0.5',
    '0x10',
    '1e1',
    '20',
    '+3',
    '1000',
    '1001',
    'null',
    'true',
    'x',
    '',
    '2.0',
    '1e-4',
  ]
  for (let i = 0; i < 300; i++) {
    const section = pick(SECTION_NAMES)
    out.push({ set: [`${section}.${pick(fieldNames(section))}=${pick(texts)}`] })
  }
  for (const n of [0.1, 1e-7, 1.5e-7, 1e21, 123456789012, 0.000001, 2.5e-6, -0.0001, 1 / 3, 6e22, 100])
    out.push({ number: n })
  return out
}

function tsOutcome(c: Case): unknown {
  try {
    if (c.number !== undefined) return { text: formatNumber(c.number) }
    if (c.set) return { ok: true, value: parseSetArgs(c.set) }
    validateConfig(c.raw, {
      ...(c.world_size ? { worldSize: c.world_size } : {}),
      ...(c.run_kind ? { runKind: c.run_kind } : {}),
    })
    return { ok: true }
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e
    return { ok: false, issues: e.issues.map(({ path, message }) => ({ path, message })) }
  }
}

describe('the TypeScript and Python validators agree', () => {
  it('on 1,800 generated configs, --set texts and numbers: verdict, field paths and messages', async () => {
    const all = cases()
    const file = join(mkdtempSync(join(tmpdir(), 'ttt-differential-')), 'cases.jsonl')
    writeFileSync(file, all.map((c) => `${JSON.stringify(c)}\n`).join(''))
    const script = join(ROOT, 'test', 'differential', 'validate.py')
    const { stdout } = await execa(venvPythonFor(), [script, file], { env: { OMP_NUM_THREADS: '1' } })
    const python = stdout.split('\n').map((line) => JSON.parse(line) as unknown)
    expect(python).toHaveLength(all.length)
    const failing = all.filter((_, i) => (python[i] as { ok?: boolean }).ok === false).length
    expect(failing).toBeGreaterThan(400) // the generator reaches the edges,
    expect(all.length - failing).toBeGreaterThan(300) // and valid configs too
    for (const [i, c] of all.entries()) expect(python[i], JSON.stringify(c)).toEqual(tsOutcome(c))
  }, 120_000)
})
