#!/usr/bin/env node
// Writes the files generated from the contracts (sdk/contracts is their one source; see
// sdk/contracts/codegen.ts for the list). `--check` exits 1 when a committed file differs.
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { renderGeneratedFiles } from '../dist/contracts/codegen.js'
import { writeOrCheck } from './generated-files.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const stale = writeOrCheck(
  root,
  renderGeneratedFiles(),
  process.argv.includes('--check'),
  (relative) => `${relative} is stale: run \`npm run codegen\` and commit the result`,
)
process.exit(stale > 0 ? 1 : 0)
