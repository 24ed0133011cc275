#!/usr/bin/env node
// Writes the generated artefacts of the config schema (sdk/config/schema.ts is the source):
//   configs/schema/job.schema.json     the JSON Schema Python validates every TOML against
//   python/ttt_video/config_types.py   typed dataclasses of the sections (types only; defaults come from the schema)
// `--check` exits 1 when a committed file differs from what would be written.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { renderGeneratedFiles } from '../dist/config/generate.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const check = process.argv.includes('--check')
let stale = false
for (const [relative, content] of Object.entries(renderGeneratedFiles())) {
  const file = join(root, relative)
  let current = null
  try {
    current = readFileSync(file, 'utf8')
  } catch {}
  if (current === content) continue
  if (check) {
    console.error(`${relative} is stale: run \`npm run schema\` and commit the result`)
    stale = true
  } else {
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(file, content)
    console.log(`wrote ${relative}`)
  }
}
process.exit(stale ? 1 : 0)
