#!/usr/bin/env node
// Writes the files generated from the contracts (sdk/contracts is their one source; see
// sdk/contracts/codegen.ts for the list). `--check` exits 1 when a committed file differs.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { renderGeneratedFiles } from '../dist/contracts/codegen.js'

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
    console.error(`${relative} is stale: run \`npm run codegen\` and commit the result`)
    stale = true
  } else {
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(file, content)
    console.log(`wrote ${relative}`)
  }
}
process.exit(stale ? 1 : 0)
