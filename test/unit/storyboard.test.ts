import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  checkSegmentCounts,
  readStoryboardFile,
  segmentPrompts,
  validateStoryboards,
} from '../../sdk/contracts/storyboard.js'
import { StoryboardError } from '../../sdk/errors.js'
import { type BadStoryboard, readCases, readVector, type StoryboardPromptCases } from '../helpers.js'

const vectors = readVector<StoryboardPromptCases>('storyboard-prompts.json')
const badStoryboards = readCases<BadStoryboard>('bad-storyboards.jsonl')
const tmp = mkdtempSync(join(tmpdir(), 'ttt-storyboard-'))

describe('scene tokens (test/vectors/storyboard-prompts.json)', () => {
  it.each(vectors.cases.map((c) => [c.name, c] as const))('%s', (_name, vector) => {
    const videos = validateStoryboards(vector.videos, vector.segments)
    const got = videos
      .map(segmentPrompts)
      .map((p) => ({ prompts: p.prompts, negative_prompts: p.negativePrompts }))
    expect(got).toEqual(vector.expected)
  })

  it('reads the same cases from .json and .jsonl files', () => {
    const vector = vectors.cases.find((c) => c.videos.length > 1)!
    const json = join(tmp, 'many.json')
    const jsonl = join(tmp, 'many.jsonl')
    writeFileSync(json, JSON.stringify(vector.videos, null, 2))
    writeFileSync(jsonl, `${vector.videos.map((v) => JSON.stringify(v)).join('\n')}\n`)
    expect(readStoryboardFile(json)).toEqual(readStoryboardFile(jsonl))
  })
})

describe('bad storyboards (test/vectors/bad-storyboards.jsonl)', () => {
  it.each(badStoryboards.map((c) => [c.name, c] as const))('%s', (_name, vector) => {
    const file = join(tmp, `${vector.name.replace(/\W+/g, '_')}-${vector.file}`)
    writeFileSync(
      file,
      vector.content_base64 !== undefined ? Buffer.from(vector.content_base64, 'base64') : vector.content!,
    )
    let error: unknown
    try {
      const videos = readStoryboardFile(file)
      if (vector.segments !== undefined) checkSegmentCounts(videos, vector.segments, file)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(StoryboardError)
    const e = error as StoryboardError
    expect(e.code).toBe(vector.code)
    expect(e.issues.map((i) => i.path)).toContain(vector.path)
    const issue = e.issues.find((i) => i.path === vector.path)!
    if (vector.line !== undefined) expect(issue.line).toBe(vector.line)
    expect(e.message).toContain(file)
  })

  it('the segment-count message gives both numbers and the video index', () => {
    expect(() => validateStoryboards([[{ text: 'a' }], [{ text: 'a' }, { text: 'b' }]], 3)).toThrow(
      /video\[0\]: has 1 segment but the config needs 3/,
    )
  })

  it('rejects storyboards that are not arrays from code', () => {
    expect(() => validateStoryboards({ text: 'x' })).toThrow(StoryboardError)
    expect(() => validateStoryboards([])).toThrow(/non-empty array/)
  })
})
