// Shared by codegen.mjs and generate-api-types.mjs: writes generated files, or checks the committed ones.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

/**
 * Writes each of `files` (path relative to the folder `root` -> its text) whose file differs; with
 * `check`, writes nothing and prints `staleMessage(path)` for each instead. Returns how many were stale.
 */
export function writeOrCheck(root, files, check, staleMessage) {
  let stale = 0
  for (const [relative, content] of Object.entries(files)) {
    const file = join(root, relative)
    let current = null
    try {
      current = readFileSync(file, 'utf8')
    } catch {}
    if (current === content) continue
    if (check) {
      console.error(staleMessage(relative))
      stale++
    } else {
      mkdirSync(dirname(file), { recursive: true })
      writeFileSync(file, content)
      console.log(`wrote ${relative}`)
    }
  }
  return stale
}
