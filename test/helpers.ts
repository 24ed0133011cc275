import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))

export function readVector<T>(name: string): T {
  return JSON.parse(readFileSync(join(ROOT, 'test', 'vectors', name), 'utf8')) as T
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
  toml?: string
  toml_base64?: string
  set?: string[]
  world_size?: number
  check_paths?: boolean
  path: string
  line?: number
  suggest?: string
}

export interface StoryboardVectors {
  cases: {
    name: string
    segments: number
    videos: unknown[]
    expected: { prompts: string[]; negative_prompts: string[] }[]
  }[]
  errors: {
    name: string
    file: string
    content?: string
    content_base64?: string
    segments?: number
    path: string
    line?: number
  }[]
}
