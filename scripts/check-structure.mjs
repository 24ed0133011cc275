#!/usr/bin/env node
// Fails when a hand-written TypeScript function runs over 60 lines or a file over 400 lines (the project's
// rule; scripts/check_structure.py checks the Python side). Generated files are left out.
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const ROOT = join(fileURLToPath(import.meta.url), '..', '..')
const MAX_FUNCTION = 60
const MAX_FILE = 400
const FOLDERS = ['sdk', 'test', 'examples', 'scripts']
const GENERATED = /\.gen\.ts$/

/** A test suite's body (`describe('...', () => {...})`) groups tests; it is not a function of its own. */
function isSuiteBody(node) {
  const call = node.parent
  return call && ts.isCallExpression(call) && /^describe(\.\w+)?$/.test(call.expression.getText())
}

function* files(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield* files(path)
    else if (/\.(ts|mjs)$/.test(entry.name) && !GENERATED.test(entry.name)) yield path
  }
}

function functionName(node) {
  if (node.name) return node.name.getText()
  const parent = node.parent
  if (parent && (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent)))
    return parent.name.getText()
  return '(anonymous)'
}

function problemsOf(path) {
  const text = readFileSync(path, 'utf8')
  const source = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true)
  const where = relative(ROOT, path)
  const lines = text.split('\n').length
  const problems = lines > MAX_FILE ? [`${where}: ${lines} lines (at most ${MAX_FILE})`] : []
  const visit = (node) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body && !isSuiteBody(node)) {
      const start = source.getLineAndCharacterOfPosition(node.getStart()).line
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line
      if (end - start + 1 > MAX_FUNCTION)
        problems.push(
          `${where}:${start + 1}: ${functionName(node)} is ${end - start + 1} lines (at most ${MAX_FUNCTION})`,
        )
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return problems
}

const problems = FOLDERS.flatMap((folder) => [...files(join(ROOT, folder))].flatMap(problemsOf))
for (const p of problems) console.error(p)
process.exit(problems.length > 0 ? 1 : 0)
