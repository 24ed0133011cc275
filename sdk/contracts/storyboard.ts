import { extname } from 'node:path'
import { visit } from 'jsonc-parser'
import { type InputIssue, StoryboardError } from '../errors.js'
import { decodeUtf8, lineColumn, readInputFile } from './text.js'

// Storyboards (reference-spec 2): a storyboard file lists videos; a video is an array of 3-second
// segments. python/ttt_video/contracts/storyboard.py implements the same rules; the shared vectors in
// test/vectors/bad-storyboards.jsonl and storyboard-prompts.json keep them equal.

export const START_SCENE = '<start_scene>'
export const END_SCENE = '<end_scene>'

export interface Segment {
  /** The prompt of this 3-second segment. */
  text: string
  /** A scene cut before this segment (ignored on the first segment). */
  requires_scene_transition?: boolean
  /** Negative prompt; absent or null means the empty string, which T5 still encodes. */
  neg_text?: string | null
}
export type Video = Segment[]

/** The prompts of one video as they are fed to T5, one per segment. */
export interface SegmentPrompts {
  prompts: string[]
  negativePrompts: string[]
}

export const SEGMENT_KEYS = ['text', 'requires_scene_transition', 'neg_text'] as const

/** Reads a .json (array of videos) or .jsonl (one video per line) storyboard file. */
export function readStoryboardFile(file: string): Video[] {
  const format = storyboardFormat(file)
  const fail = (message: string) => new StoryboardError([{ path: '', message }], file)
  const bytes = readInputFile(file, 'a storyboard file', 'the storyboard', fail)
  return parseStoryboards(bytes, format, file)
}

export function storyboardFormat(file: string): 'json' | 'jsonl' {
  const ext = extname(file).toLowerCase()
  if (ext === '.json') return 'json'
  if (ext === '.jsonl') return 'jsonl'
  throw new StoryboardError(
    [
      {
        path: '',
        message: `unsupported extension "${ext || '(none)'}"; use .json (an array of videos) or .jsonl (one video per line)`,
      },
    ],
    file,
  )
}

function decodeText(input: Uint8Array | string, file?: string): string {
  if (typeof input === 'string') return input
  const decoded = decodeUtf8(input)
  if ('text' in decoded) return decoded.text
  const { line, column, badByte } = decoded
  const message = `not valid UTF-8 (byte ${badByte}); save the file as UTF-8`
  throw new StoryboardError([{ path: '', line, column, message }], file)
}

/** A .json storyboard: one array of videos. */
function parseJsonFile(text: string, issues: InputIssue[]): Video[] {
  const parsed = parseJson(text, 0, issues)
  if (!parsed.ok) return []
  if (!Array.isArray(parsed.value)) {
    issues.push({
      path: '',
      message: 'a .json storyboard must be an array of videos (each an array of segments)',
    })
    return []
  }
  if (parsed.value.length === 0) issues.push({ path: '', message: 'the storyboard holds no video' })
  return parsed.value.map((v, i) => checkVideo(v, i, issues))
}

/** A .jsonl storyboard: one video a line (blank lines are skipped); issues carry their line. */
function parseJsonLinesFile(text: string, issues: InputIssue[]): Video[] {
  const videos: Video[] = []
  text.split('\n').forEach((line, lineIndex) => {
    if (line.trim() === '') return
    const parsed = parseJson(line, lineIndex, issues)
    if (!parsed.ok) {
      videos.push([])
      return
    }
    const before = issues.length
    videos.push(checkVideo(parsed.value, videos.length, issues))
    for (const issue of issues.slice(before)) issue.line = lineIndex + 1
  })
  if (videos.length === 0 && issues.length === 0)
    issues.push({ path: '', message: 'the storyboard holds no video' })
  return videos
}

/** Parses storyboard bytes or text; every problem found is reported with its place. */
export function parseStoryboards(
  input: Uint8Array | string,
  format: 'json' | 'jsonl',
  file?: string,
): Video[] {
  const text = decodeText(input, file)
  if (text.trim() === '')
    throw new StoryboardError([{ path: '', message: 'the storyboard file is empty' }], file)
  const issues: InputIssue[] = []
  const videos = format === 'json' ? parseJsonFile(text, issues) : parseJsonLinesFile(text, issues)
  if (issues.length > 0) throw new StoryboardError(issues, file)
  return videos
}

/** Checks that every video has exactly the number of segments the config asks for. */
export function checkSegmentCounts(videos: readonly Video[], segments: number, file?: string): void {
  const issues: InputIssue[] = []
  videos.forEach((video, i) => {
    if (video.length !== segments) {
      issues.push({
        path: `video[${i}]`,
        message: `has ${video.length} segment${video.length === 1 ? '' : 's'} but the config needs ${segments} (eval.sampling_num_frames = ${12 * segments + 1} latent frames = ${segments} x 3 s); give each video ${segments} segments or change the length preset`,
      })
    }
  })
  if (issues.length > 0) throw new StoryboardError(issues, file)
}

/** Validates storyboard objects given in code (the same checks as a file). */
export function validateStoryboards(videos: unknown, segments?: number): Video[] {
  const issues: InputIssue[] = []
  if (!Array.isArray(videos) || videos.length === 0) {
    throw new StoryboardError([
      { path: '', message: 'storyboards must be a non-empty array of videos (each an array of segments)' },
    ])
  }
  const checked = videos.map((v, i) => checkVideo(v, i, issues))
  if (issues.length > 0) throw new StoryboardError(issues)
  if (segments !== undefined) checkSegmentCounts(checked, segments)
  return checked
}

/** The T5 prompts of a video with the scene tokens inserted exactly as the reference does (spec 2.3). */
export function segmentPrompts(video: Video): SegmentPrompts {
  const prompts = video.map((s) => s.text)
  video.forEach((segment, i) => {
    if (i > 0 && segment.requires_scene_transition === true) {
      prompts[i - 1] = `${prompts[i - 1]}${END_SCENE}`
      prompts[i] = `${START_SCENE}${prompts[i]}`
    }
  })
  return { prompts, negativePrompts: video.map((s) => s.neg_text ?? '') }
}

/** The first key given twice in one object, if any (JSON.parse keeps the last one silently). */
function duplicateKey(text: string): string | undefined {
  const stack: Set<string>[] = []
  let found: string | undefined
  visit(text, {
    onObjectBegin: () => {
      stack.push(new Set())
    },
    onObjectEnd: () => {
      stack.pop()
    },
    onObjectProperty: (key) => {
      const keys = stack.at(-1)
      if (keys?.has(key)) found ??= key
      keys?.add(key)
    },
  })
  return found
}

function parseJson(
  text: string,
  lineIndex: number,
  issues: InputIssue[],
): { ok: true; value: unknown } | { ok: false } {
  try {
    const value: unknown = JSON.parse(text)
    const duplicate = duplicateKey(text)
    if (duplicate === undefined) return { ok: true, value }
    const line = lineIndex > 0 || !text.includes('\n') ? { line: lineIndex + 1 } : {}
    issues.push({
      path: '',
      ...line,
      message: `duplicate key "${duplicate}" in an object; give each key once`,
    })
    return { ok: false }
  } catch (e) {
    const message = (e as Error).message
    const position = /position (\d+)/.exec(message)
    const where = position ? lineColumn(text, Number(position[1])) : undefined
    const line = where
      ? lineIndex + where.line
      : lineIndex > 0 || text.indexOf('\n') < 0
        ? lineIndex + 1
        : undefined
    issues.push({
      path: '',
      ...(line !== undefined ? { line } : {}),
      ...(where ? { column: where.column } : {}),
      message: `invalid JSON: ${message.replace(/ in JSON at position \d+.*$/, '').replace(/^JSON\.parse: /, '')}`,
    })
    return { ok: false }
  }
}

function checkVideo(value: unknown, index: number, issues: InputIssue[]): Video {
  const where = `video[${index}]`
  if (!Array.isArray(value)) {
    issues.push({ path: where, message: `must be an array of segment objects, got ${describe(value)}` })
    return []
  }
  if (value.length === 0) {
    issues.push({ path: where, message: 'has no segment; a video needs at least one {"text": ...}' })
    return []
  }
  return value.map((segment, j) => checkSegment(segment, `${where}.segment[${j}]`, issues))
}

function checkSegment(value: unknown, where: string, issues: InputIssue[]): Segment {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    issues.push({ path: where, message: `must be an object like {"text": "..."}, got ${describe(value)}` })
    return { text: '' }
  }
  const obj = value as Record<string, unknown>
  for (const key of Object.keys(obj)) {
    if (!(SEGMENT_KEYS as readonly string[]).includes(key)) {
      issues.push({
        path: `${where}.${key}`,
        message: `unknown key "${key}"; a segment has ${SEGMENT_KEYS.join(', ')}`,
      })
    }
  }
  const segment: Segment = { text: '' }
  if (!('text' in obj)) {
    issues.push({ path: `${where}.text`, message: 'is missing; every segment needs a prompt' })
  } else if (typeof obj.text !== 'string') {
    issues.push({ path: `${where}.text`, message: `must be a string, got ${describe(obj.text)}` })
  } else if (obj.text.trim() === '') {
    issues.push({ path: `${where}.text`, message: 'must not be empty' })
  } else {
    segment.text = obj.text
    issues.push(...textIssues(obj.text, `${where}.text`))
  }
  if ('requires_scene_transition' in obj) {
    if (typeof obj.requires_scene_transition !== 'boolean') {
      issues.push({
        path: `${where}.requires_scene_transition`,
        message: `must be true or false, got ${describe(obj.requires_scene_transition)}`,
      })
    } else {
      segment.requires_scene_transition = obj.requires_scene_transition
    }
  }
  if ('neg_text' in obj) {
    if (obj.neg_text !== null && typeof obj.neg_text !== 'string') {
      issues.push({
        path: `${where}.neg_text`,
        message: `must be a string or null, got ${describe(obj.neg_text)}`,
      })
    } else {
      segment.neg_text = obj.neg_text
      if (typeof obj.neg_text === 'string') issues.push(...textIssues(obj.neg_text, `${where}.neg_text`))
    }
  }
  return segment
}

/** A prompt may not hold NUL characters or the scene tokens (which the storyboard's cuts insert). */
function textIssues(text: string, where: string): InputIssue[] {
  const issues: InputIssue[] = []
  if (text.includes('\u0000')) issues.push({ path: where, message: 'contains a NUL character; remove it' })
  for (const token of [START_SCENE, END_SCENE]) {
    if (text.includes(token))
      issues.push({
        path: where,
        message: `contains ${token}; scene tokens are inserted from requires_scene_transition, remove it`,
      })
  }
  return issues
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`
  return `${typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`}`
}
