import { createHash } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { PythonRuntimeError } from '../errors.js'
import { PYTHON_ENV, packageRoot, resolveVenvDir, venvPython } from './paths.js'

/** The torch release the project is tested with. */
export const DEFAULT_TORCH_VERSION = '2.13.0'
const PYTORCH_CPU_INDEX = 'https://download.pytorch.org/whl/cpu'
const PUBLIC_INDEX = 'https://pypi.org/simple/'
export const PIP_INDEX_ENV = 'TTT_VIDEO_PIP_INDEX_URL'
const STAMP_FILE = '.ttt-video-setup.json'
const MIN_PYTHON: [number, number] = [3, 11]

export interface SetupOptions {
  /** Virtual environment folder (default: $TTT_VIDEO_VENV or <package>/.venv). */
  venvDir?: string
  /** Python used to create the environment (default: $TTT_VIDEO_PYTHON or python3). */
  python?: string
  /** Install a CUDA build of torch instead of the CPU one. */
  cuda?: boolean
  /** Optional extras of the Python package: 'triton' (the fused TTT scan kernel; tests run it on CPU). */
  extras?: readonly 'triton'[]
  torchVersion?: string
  /** Reinstall even when the environment is up to date. */
  force?: boolean
  /** Receives every progress line (ours and pip's). */
  onLog?: (line: string) => void
  signal?: AbortSignal
}

export interface SetupResult {
  venvDir: string
  python: string
  /** False when the environment was already up to date. */
  changed: boolean
  torch: string
  seconds: number
}

interface Stamp {
  key: string
  torch: string
  extras?: string[]
}

interface Plan {
  venvDir: string
  python: string
  variant: 'cpu' | 'cuda'
  torchVersion: string
  key: string
  extras: string[]
  log: (line: string) => void
  signal: AbortSignal | undefined
}

function planOf(options: SetupOptions): Plan {
  const venvDir = resolveVenvDir(options.venvDir)
  const variant = options.cuda ? 'cuda' : 'cpu'
  const torchVersion = options.torchVersion ?? DEFAULT_TORCH_VERSION
  const root = packageRoot()
  const pyproject = readFileSync(join(root, 'python', 'pyproject.toml'), 'utf8')
  const key = createHash('sha256')
    .update(JSON.stringify([pyproject, variant, torchVersion, root]))
    .digest('hex')
  return {
    venvDir,
    python: venvPython(venvDir),
    variant,
    torchVersion,
    key,
    extras: [...(options.extras ?? [])],
    log: options.onLog ?? (() => {}),
    signal: options.signal,
  }
}

/** The stamp of an environment that already has everything `plan` asks for, else undefined. */
async function upToDate(plan: Plan): Promise<Stamp | undefined> {
  const stampPath = join(plan.venvDir, STAMP_FILE)
  if (!existsSync(plan.python) || !existsSync(stampPath)) return undefined
  const stamp = JSON.parse(readFileSync(stampPath, 'utf8')) as Stamp
  const hasExtras = plan.extras.every((e) => (stamp.extras ?? []).includes(e))
  return stamp.key === plan.key && hasExtras && (await importsWork(plan.python)) ? stamp : undefined
}

async function install(plan: Plan, basePython: string, extras: string[]): Promise<void> {
  if (!existsSync(plan.python)) {
    const version = await pythonVersion(basePython)
    plan.log(`Creating a Python ${version} environment in ${plan.venvDir}`)
    await run(basePython, ['-m', 'venv', plan.venvDir], plan.log, plan.signal)
  }
  const index = await pipIndexEnvironment(plan.python, plan.log)
  const torchSpec = `torch==${plan.torchVersion}`
  const torchArgs = ['install', '--disable-pip-version-check', torchSpec]
  if (plan.variant === 'cpu' && index.online) torchArgs.push('--index-url', PYTORCH_CPU_INDEX)
  plan.log(
    `Installing ${torchSpec} (${plan.variant === 'cpu' ? 'CPU' : 'CUDA'} build); this is the longest step`,
  )
  await run(plan.python, ['-m', 'pip', ...torchArgs], plan.log, plan.signal, index.env)
  plan.log(
    `Installing the ttt_video Python package and its pinned dependencies${extras.length ? ` (+ ${extras.join(', ')})` : ''}`,
  )
  const pkg = `${join(packageRoot(), 'python')}[${['dev', ...extras].join(',')}]`
  await run(
    plan.python,
    ['-m', 'pip', 'install', '--disable-pip-version-check', '-e', pkg],
    plan.log,
    plan.signal,
    index.env,
  )
}

async function installedTorch(plan: Plan): Promise<string> {
  const r = await execa(plan.python, ['-c', 'import torch, ttt_video; print(torch.__version__)'], {
    reject: false,
  })
  const torch = r.stdout.trim()
  if (!torch)
    throw new PythonRuntimeError(
      `the environment ${plan.venvDir} was installed but cannot import torch and ttt_video`,
    )
  if (plan.variant === 'cuda' && torch.includes('+cpu'))
    throw new PythonRuntimeError(
      `asked for a CUDA build but pip installed ${torch}; pass --torch-version with a version your index has as a CUDA build`,
    )
  return torch
}

/** Creates or updates the managed Python environment; a second run with nothing to do takes seconds. */
export async function setupRuntime(options: SetupOptions = {}): Promise<SetupResult> {
  const started = performance.now()
  const seconds = () => Math.round((performance.now() - started) / 100) / 10
  const plan = planOf(options)
  const current = options.force ? undefined : await upToDate(plan)
  if (current) {
    plan.log(`Python environment ${plan.venvDir} is up to date (torch ${current.torch})`)
    return {
      venvDir: plan.venvDir,
      python: plan.python,
      changed: false,
      torch: current.torch,
      seconds: seconds(),
    }
  }
  const stampPath = join(plan.venvDir, STAMP_FILE)
  const previous = existsSync(stampPath) ? (JSON.parse(readFileSync(stampPath, 'utf8')) as Stamp).extras : []
  const extras = [...new Set([...(previous ?? []), ...plan.extras])].sort()
  await install(plan, options.python ?? process.env[PYTHON_ENV] ?? 'python3', extras)
  const torch = await installedTorch(plan)
  writeFileSync(stampPath, `${JSON.stringify({ key: plan.key, torch, extras } satisfies Stamp)}\n`)
  plan.log(`Python environment ready: torch ${torch} (${seconds()} s)`)
  return { venvDir: plan.venvDir, python: plan.python, changed: true, torch, seconds: seconds() }
}

async function importsWork(python: string): Promise<boolean> {
  const r = await execa(python, ['-c', 'import ttt_video, torch'], { reject: false })
  return r.exitCode === 0
}

async function pythonVersion(basePython: string): Promise<string> {
  const r = await execa(basePython, ['-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])'], {
    reject: false,
  })
  if (r.exitCode !== 0 || r.failed) {
    throw new PythonRuntimeError(
      `cannot run "${basePython}" to create the environment; install Python >= ${MIN_PYTHON.join('.')} or point ${PYTHON_ENV} (or --python) at one`,
    )
  }
  const version = r.stdout.trim()
  const [major, minor] = version.split('.').map(Number)
  if (major! < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor! < MIN_PYTHON[1])) {
    throw new PythonRuntimeError(
      `${basePython} is Python ${version}; ttt-video needs >= ${MIN_PYTHON.join('.')} (set ${PYTHON_ENV} or --python)`,
    )
  }
  return version
}

/**
 * pip's default index is the public one. Where it cannot be reached (an offline or mirrored machine) pip
 * retries it for minutes before using the configured extra indexes, so then we make the first configured
 * index the main one. $TTT_VIDEO_PIP_INDEX_URL forces an index.
 */
export async function pipIndexEnvironment(
  python: string,
  log: (line: string) => void,
): Promise<{ online: boolean; env: Record<string, string> }> {
  const forced = process.env[PIP_INDEX_ENV]
  if (forced) {
    log(`Using the package index ${forced} (${PIP_INDEX_ENV})`)
    return { online: false, env: { PIP_INDEX_URL: forced } }
  }
  if (await reachable(PUBLIC_INDEX)) return { online: true, env: {} }
  const config = await execa(python, ['-m', 'pip', 'config', 'list'], { reject: false })
  const extra =
    /^[\w:.-]*extra-index-url='([^']*)'/m.exec(config.stdout)?.[1]?.split(/\s+/).filter(Boolean) ?? []
  if (extra.length === 0) {
    log(
      `The public package index is not reachable and pip has no other index configured; pip will keep retrying`,
    )
    return { online: false, env: {} }
  }
  log(`The public package index is not reachable; using the configured index ${extra[0]}`)
  return {
    online: false,
    env: { PIP_INDEX_URL: extra[0]!, PIP_EXTRA_INDEX_URL: extra.slice(1).join(' '), PIP_RETRIES: '0' },
  }
}

async function reachable(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(4000) })
    return response.status < 500
  } catch {
    return false
  }
}

async function run(
  file: string,
  args: string[],
  log: (line: string) => void,
  signal?: AbortSignal,
  env: Record<string, string> = {},
): Promise<void> {
  const sub = execa(file, args, {
    all: true,
    buffer: false,
    reject: false,
    env: { ...env, PYTHONUNBUFFERED: '1' },
    ...(signal ? { cancelSignal: signal } : {}),
  })
  const tail: string[] = []
  for await (const line of sub.iterable({ from: 'all' })) {
    const text = String(line)
    if (/is ignored: it is neither a file nor a directory/.test(text)) continue
    tail.push(text)
    if (tail.length > 30) tail.shift()
    log(`  ${text}`)
  }
  const result = await sub
  if (result.exitCode !== 0) {
    throw new PythonRuntimeError(
      `${[file, ...args].join(' ')} failed (exit ${result.exitCode}):\n${tail.join('\n')}`,
    )
  }
}
