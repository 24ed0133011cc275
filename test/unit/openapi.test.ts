import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { serveOptions } from '../../sdk/cli/commands/serve.js'
import { RunEvent } from '../../sdk/contracts/events.js'
import { bearerToken, tokensEqual } from '../../sdk/server/auth.js'
import { isJobId, newJobId } from '../../sdk/server/ids.js'
import { formatPath } from '../../sdk/server/issue-paths.js'
import { parseRange } from '../../sdk/server/media.js'
import { openapiDocument } from '../../sdk/server/openapi.js'
import { buildOpenApiDocument, refsOf, zodComponentSchemas } from '../../sdk/server/openapi-document.js'
import { jobsToRemove } from '../../sdk/server/retention.js'
import { match, routes } from '../../sdk/server/routes/index.js'
import { JobRequest } from '../../sdk/server/schemas.js'
import type { JobRecord } from '../../sdk/server/store.js'
import { ROOT } from '../helpers.js'

interface OpenApi {
  paths: Record<string, Record<string, unknown>>
  components: { schemas: Record<string, unknown> }
}
const handWritten = parse(readFileSync(join(ROOT, 'sdk', 'server', 'openapi.yaml'), 'utf8')) as OpenApi
const served = openapiDocument as unknown as OpenApi

describe('the OpenAPI document', () => {
  it('is openapi.yaml plus the JSON Schema of the zod schemas, which the YAML does not copy', () => {
    expect(served).toEqual(buildOpenApiDocument(handWritten as never))
    const fromZod = zodComponentSchemas()
    expect(Object.keys(fromZod).sort()).toEqual(['ConfigOverrides', 'JobRequest', 'RunEvent', 'Segment'])
    for (const [id, schema] of Object.entries(fromZod)) {
      expect(handWritten.components.schemas[id]).toBeUndefined()
      expect([id, served.components.schemas[id]]).toEqual([id, schema])
    }
    // the event union is the SDK's: every event type of sdk/contracts/events.ts is in it
    const eventTypes = (
      fromZod.RunEvent as { oneOf: { properties: { type: { const: string } } }[] }
    ).oneOf.map((o) => o.properties.type.const)
    expect(eventTypes.sort()).toEqual(RunEvent.options.map((o) => o.shape.type.value).sort())
  })

  it('is refused when the YAML copies a zod component or a $ref points nowhere', () => {
    const copy = structuredClone(handWritten)
    copy.components.schemas.Segment = { type: 'object' }
    expect(() => buildOpenApiDocument(copy as never)).toThrow(/defines Segment/)
    const dangling = structuredClone(handWritten)
    dangling.components.schemas.Extra = { $ref: '#/components/schemas/Nowhere' }
    expect(() => buildOpenApiDocument(dangling as never)).toThrow(/Nowhere/)
    expect(refsOf(served).size).toBeGreaterThan(10)
  })

  it('the generated files are up to date (openapi.gen.json, api.gen.ts: the --check mode)', async () => {
    const r = await execa('node', [join(ROOT, 'scripts', 'generate-api-types.mjs'), '--check'], {
      reject: false,
      cwd: ROOT,
    })
    expect([r.exitCode, r.stderr]).toEqual([0, ''])
  })

  it('every operation of the document has a route, and every route is in the document', () => {
    const table = routes({} as never)
    const sample = (path: string) => path.replace('{id}', '20261125-101500-1a2b3c4d').replace('{index}', '0')
    const operations = Object.entries(served.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((k) => ['get', 'post', 'put', 'delete', 'head', 'patch'].includes(k))
        .map((method) => [method.toUpperCase(), path] as const),
    )
    for (const [method, path] of operations) expect(() => match(table, method, sample(path))).not.toThrow()
    const documented = new Set(Object.keys(served.paths).map(sample))
    for (const route of table) {
      const example = [...documented].find((p) => route.pattern.test(p))
      expect([String(route.pattern), example !== undefined]).toEqual([String(route.pattern), true])
    }
  })
})

const record: JobRecord = {
  version: 2,
  id: '20261125-000000-00000000',
  state: 'succeeded',
  created_at: '2026-11-25T00:00:00.000Z',
  started_at: null,
  resumed_at: null,
  finished_at: null,
  bundle: 'demo',
  preset: null,
  seed: 42,
  videos_total: 1,
  error: null,
  pid: null,
}

describe('request schema and helpers', () => {
  it('JobRequest takes storyboards and overrides, not paths or unknown sections', () => {
    const ok = { storyboards: [[{ text: 'a' }]], overrides: { eval: { num_denoising_steps: 2 } }, seed: 1 }
    expect(JobRequest.safeParse(ok).success).toBe(true)
    for (const bad of [
      { storyboards: [] },
      { storyboards: [[]] },
      { storyboards: [[{ text: 'a' }]], overrides: { eval: { output_dir: '/tmp' } } },
      { storyboards: [[{ text: 'a' }]], overrides: { checkpoint: { model_dir: '/x' } } },
      { storyboards: [[{ text: 'a' }]], overrides: { job: { dump_folder: '/x' } } },
      { storyboards: [[{ text: 'a' }]], bundle: '../x' },
      { storyboards: [[{ text: 'a' }]], preset: '../../etc/x' },
      { storyboards: [[{ text: 'a' }]], model: '/bundle' },
    ]) {
      expect([bad, JobRequest.safeParse(bad).success]).toEqual([bad, false])
    }
  })

  it('formats field paths as the problems show them', () => {
    expect(formatPath(['storyboards', 0, 1, 'text'])).toBe('storyboards[0][1].text')
    expect(formatPath(['overrides', 'eval', 'num_denoising_steps'])).toBe(
      'overrides.eval.num_denoising_steps',
    )
  })

  it('job ids are strict', () => {
    const id = newJobId(new Date('2026-11-25T10:15:00Z'))
    expect(id).toMatch(/^20261125-101500-[0-9a-f]{8}$/)
    expect(isJobId(id)).toBe(true)
    for (const bad of ['../x', '..', '', `${id}/..`, `${id}\n`, id.toUpperCase().replace(/-/g, '_')]) {
      expect([bad, isJobId(bad)]).toEqual([bad, false])
    }
  })

  it('tokens: bearer parsing and constant-time comparison of any lengths', () => {
    expect(bearerToken('Bearer abc')).toBe('abc')
    expect(bearerToken('bearer  abc ')).toBe('abc')
    expect(bearerToken('Basic abc')).toBeUndefined()
    expect(bearerToken(undefined)).toBeUndefined()
    expect(tokensEqual('secret-token', 'secret-token')).toBe(true)
    expect(tokensEqual('secret-token', 'secret-tokeN')).toBe(false)
    expect(tokensEqual('', 'secret-token')).toBe(false)
    expect(tokensEqual('x'.repeat(10_000), 'secret-token')).toBe(false)
  })

  it('serve flags become server options', () => {
    expect(
      serveOptions([], {
        port: '0',
        bundle: ['tiny=demo', 'big=/models/b'],
        'gpu-set': ['0,1', '2,3'],
        resume: true,
        'job-nice': '0',
      }),
    ).toEqual({
      port: 0,
      bundles: { tiny: 'builtin:demo', big: '/models/b' },
      gpuSets: ['0,1', '2,3'],
      resume: true,
      jobNice: 0,
    })
    expect(serveOptions([], { 'keep-jobs': '20', 'keep-days': '0.5' })).toEqual({
      keepJobs: 20,
      keepDays: 0.5,
    })
    expect(() => serveOptions([], { 'keep-jobs': '0' })).toThrow(/--keep-jobs must be a whole number >= 1/)
    for (const days of ['0', '-1', 'week', '1e3'])
      expect(() => serveOptions([], { 'keep-days': days })).toThrow(/--keep-days must be a number of days/)
    expect(() => serveOptions([], { bundle: ['nopath'] })).toThrow(/NAME=PATH/)
    expect(() => serveOptions([], { port: '70000' })).toThrow(/65535/)
    for (const port of ['0x10', '1e3', '80.5'])
      expect(() => serveOptions([], { port })).toThrow(/--port must be/)
    expect(() => serveOptions(['x'], {})).toThrow(/positional/)
  })

  it('retention: the newest keepJobs ended jobs stay, those ended keepDays ago go, live ones never', () => {
    const now = new Date('2026-11-25T12:00:00Z')
    let n = 0
    const job = (state: JobRecord['state'], daysAgo: number): JobRecord => {
      const at = new Date(now.getTime() - daysAgo * 86_400_000).toISOString()
      const id = `20261125-000000-${(n++).toString(16).padStart(8, '0')}`
      const ended = !['queued', 'running'].includes(state)
      return { ...record, id, state, created_at: at, finished_at: ended ? at : null }
    }
    const jobs = [job('succeeded', 9), job('failed', 3), job('cancelled', 1), job('interrupted', 0.2)]
    const live = [job('queued', 30), job('running', 20)]
    const ids = (keepJobs: number | undefined, keepDays: number | undefined) =>
      jobsToRemove([...live, ...jobs], { keepJobs, keepDays }, now).sort()
    expect(ids(undefined, undefined)).toEqual([])
    expect(ids(2, undefined)).toEqual([jobs[0]!.id, jobs[1]!.id])
    expect(ids(undefined, 2)).toEqual([jobs[0]!.id, jobs[1]!.id])
    expect(ids(undefined, 0.5)).toEqual([jobs[0]!.id, jobs[1]!.id, jobs[2]!.id])
    expect(ids(3, 5)).toEqual([jobs[0]!.id]) // either rule removes
    expect(ids(1, 100)).toEqual([jobs[0]!.id, jobs[1]!.id, jobs[2]!.id])
  })

  it('byte ranges', () => {
    expect(parseRange(undefined, 100)).toBeNull()
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 })
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 })
    expect(parseRange('bytes=95-200', 100)).toEqual({ start: 95, end: 99 })
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 })
    expect(parseRange('bytes=-1000', 100)).toEqual({ start: 0, end: 99 })
    expect(parseRange('bytes=0-1,5-9', 100)).toBeNull() // several ranges: the whole file
    expect(parseRange('bytes=9-0', 100)).toBeNull()
    expect(parseRange('items=0-9', 100)).toBeNull()
    expect(() => parseRange('bytes=100-', 100)).toThrow(/100 bytes/)
    expect(() => parseRange('bytes=-0', 100)).toThrow()
  })
})
