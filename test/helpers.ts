import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** A one-video, one-segment storyboard of the shipped examples (3 s: the quickest run). */
export const READY_STORYBOARD = join(ROOT, 'examples', 'storyboards', 'puppy-3s.jsonl')

export function readVector<T>(name: string): T {
  return JSON.parse(readFileSync(join(ROOT, 'test', 'vectors', name), 'utf8')) as T
}

/** A bad-input corpus of test/vectors: one case a line, each with the expected error code and field. */
export function readCases<T>(name: string): T[] {
  const text = readFileSync(join(ROOT, 'test', 'vectors', name), 'utf8')
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as T)
}

/** Every .toml under configs/, relative to the repository root. */
export function shippedConfigs(): string[] {
  const out: string[] = []
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (entry.name.endsWith('.toml')) out.push(relative(ROOT, full))
    }
  }
  walk(join(ROOT, 'configs'))
  return out.sort()
}

export interface BadConfig {
  name: string
  code: string
  toml?: string
  toml_base64?: string
  set?: string[]
  world_size?: number
  check_paths?: boolean
  path: string
  line?: number
  suggest?: string
}

export interface StoryboardPromptCases {
  cases: {
    name: string
    segments: number
    videos: unknown[]
    expected: { prompts: string[]; negative_prompts: string[] }[]
  }[]
}

export interface BadStoryboard {
  name: string
  file: string
  content?: string
  content_base64?: string
  segments?: number
  code: string
  path: string
  line?: number
}

/** Every process in the tree under `pid` (Linux /proc). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)])
    } catch {}
  }
  const out: number[] = []
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c)
      walk(c)
    }
  }
  walk(pid)
  return out
}

/** Whether a process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ')
  } catch {
    return false
  }
}
