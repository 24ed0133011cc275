import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PythonRuntimeError } from '../errors.js'

/** The root of the ttt-video package (holds package.json, python/, configs/). */
export function packageRoot(): string {
  // This file sits two levels below the root both as source (sdk/python) and built (dist/python).
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
}

export const VENV_ENV = 'TTT_VIDEO_VENV'
export const PYTHON_ENV = 'TTT_VIDEO_PYTHON'

/** Where the managed virtual environment lives: an explicit option, $TTT_VIDEO_VENV, or <package>/.venv. */
export function resolveVenvDir(option?: string): string {
  const chosen = option ?? process.env[VENV_ENV]
  return chosen ? resolve(chosen) : join(packageRoot(), '.venv')
}

export function venvPython(venvDir: string): string {
  return process.platform === 'win32'
    ? join(venvDir, 'Scripts', 'python.exe')
    : join(venvDir, 'bin', 'python')
}

export function venvExists(venvDir: string): boolean {
  return existsSync(venvPython(venvDir))
}

/** The interpreter of the managed environment; a PythonRuntimeError says how to create it when missing. */
export function venvPythonFor(option?: string): string {
  const dir = resolveVenvDir(option)
  if (!venvExists(dir))
    throw new PythonRuntimeError(
      `no Python environment at ${dir}; run \`npx ttt-video setup${option ? ` --venv ${option}` : ''}\` first`,
    )
  return venvPython(dir)
}
