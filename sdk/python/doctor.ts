import { statfsSync } from 'node:fs'
import { TttVideoError } from '../errors.js'
import { FfmpegNotFoundError } from '../video/errors.js'
import { findFfmpeg } from '../video/ffmpeg.js'
import { getBridge } from './bridge/index.js'
import { resolveVenvDir, venvExists, venvPython } from './paths.js'

export interface GpuInfo {
  index: number
  name: string
  memory_gib: number
  capability: string
  bf16: boolean
}

/** What `python -m ttt_video doctor --json` reports. */
export interface PythonDoctorReport {
  python: { version: string; executable: string }
  packages: Record<string, string | null>
  torch: {
    version?: string
    cuda_available?: boolean
    cuda_version?: string | null
    gpus?: GpuInfo[]
    error?: string
  }
  ffmpeg: { path: string | null; version?: string; source: string | null; error?: string }
  disk: { path: string; free_gib: number; total_gib: number }
}

export interface DoctorFinding {
  /** `problem`: something that stops a run; `note`: worth knowing, nothing is broken. */
  level: 'problem' | 'note'
  message: string
  /** The command (or action) that fixes it. */
  fix?: string
}

export interface DoctorReport {
  node: { version: string }
  venv: { path: string; exists: boolean }
  python: PythonDoctorReport | null
  ffmpeg: { path: string | null; source: string | null }
  disk: { path: string; freeGiB: number }
  findings: DoctorFinding[]
}

const MIN_NODE: [number, number] = [20, 19]
const BUNDLE_GIB = 25
/** How long the Python half may take (importing torch and querying CUDA take seconds). */
const PYTHON_TIMEOUT_MS = 120_000

const problem = (message: string, fix?: string): DoctorFinding => ({
  level: 'problem',
  message,
  ...(fix ? { fix } : {}),
})
const note = (message: string, fix?: string): DoctorFinding => ({
  level: 'note',
  message,
  ...(fix ? { fix } : {}),
})

function nodeFindings(): DoctorFinding[] {
  const [major, minor] = process.versions.node.split('.').map(Number)
  if (major! > MIN_NODE[0] || (major === MIN_NODE[0] && minor! >= MIN_NODE[1])) return []
  return [
    problem(
      `Node ${process.versions.node} is older than ${MIN_NODE.join('.')}`,
      'install Node 20.19 or newer',
    ),
  ]
}

/**
 * The Python half, through the process's bridge (`ttt_video.doctor.doctor_report`). A Python that will
 * not start, dies, raises or hangs is a finding, not an error.
 */
async function pythonReport(
  venvDir: string,
  setup: string,
): Promise<[PythonDoctorReport | null, DoctorFinding[]]> {
  if (!venvExists(venvDir)) return [null, [problem(`no Python environment at ${venvDir}`, setup)]]
  try {
    const bridge = await getBridge({ venvDir })
    const findings: DoctorFinding[] = []
    if (bridge.python !== venvPython(venvDir))
      findings.push(
        note(
          `this process's Python bridge already runs ${bridge.python} (pythonia allows one per process): the Python report describes it, not ${venvDir}`,
        ),
      )
    const report = await bridge.call<PythonDoctorReport>(
      'ttt_video.doctor.doctor_report',
      { disk_path: process.cwd() },
      { timeoutMs: PYTHON_TIMEOUT_MS },
    )
    return [report, [...findings, ...torchFindings(report, setup)]]
  } catch (e) {
    if (!(e instanceof TttVideoError)) throw e
    return [
      null,
      [problem(`the Python environment at ${venvDir} is broken: ${e.message}`, `${setup} --force`)],
    ]
  }
}

function torchFindings(python: PythonDoctorReport, setup: string): DoctorFinding[] {
  if (python.torch.error) return [problem(`torch does not import: ${python.torch.error}`, `${setup} --force`)]
  const findings: DoctorFinding[] = []
  if (!python.torch.cuda_available)
    findings.push(
      note(
        `no CUDA GPU visible to torch ${python.torch.version}: runs use the CPU, where only the demo and tiny models are practical`,
        `on a GPU machine: ${setup} --cuda`,
      ),
    )
  for (const gpu of python.torch.gpus ?? []) {
    if (!gpu.bf16)
      findings.push(
        note(
          `GPU ${gpu.index} (${gpu.name}) has no bf16: set parallelism.fsdp_unsharded_dtype and eval.dtype to float16 or float32`,
        ),
      )
  }
  return findings
}

function diskFindings(path: string): [number, DoctorFinding[]] {
  const fs = statfsSync(path)
  const freeGiB = Math.round(((fs.bavail * fs.bsize) / 2 ** 30) * 10) / 10
  if (freeGiB >= BUNDLE_GIB) return [freeGiB, []]
  return [
    freeGiB,
    [note(`${freeGiB} GiB free at ${path}; a converted 5B model bundle needs about ${BUNDLE_GIB} GiB`)],
  ]
}

/** Node, the Python environment, torch and GPUs, ffmpeg and disk, with a fix for each problem. */
export async function doctor(options: { venvDir?: string } = {}): Promise<DoctorReport> {
  const venvDir = resolveVenvDir(options.venvDir)
  const setup = `ttt-video setup${options.venvDir ? ` --venv ${options.venvDir}` : ''}`
  const [python, pythonFindings] = await pythonReport(venvDir, setup)
  const ffmpeg = await locateFfmpeg(venvDir)
  const ffmpegFindings = ffmpeg.path
    ? []
    : [
        problem(
          'no ffmpeg found (FFMPEG_PATH, PATH, or the imageio-ffmpeg package of the Python environment)',
          `${setup} (installs imageio-ffmpeg), or apt-get install ffmpeg, or set FFMPEG_PATH`,
        ),
      ]
  const diskPath = venvExists(venvDir) ? venvDir : process.cwd()
  const [freeGiB, disk] = diskFindings(diskPath)
  return {
    node: { version: process.versions.node },
    venv: { path: venvDir, exists: venvExists(venvDir) },
    python,
    ffmpeg,
    disk: { path: diskPath, freeGiB },
    findings: [...nodeFindings(), ...pythonFindings, ...ffmpegFindings, ...disk],
  }
}

async function locateFfmpeg(venvDir: string): Promise<{ path: string | null; source: string | null }> {
  try {
    const found = await findFfmpeg({ venvDir })
    return { path: found.ffmpeg, source: found.ffmpegSource }
  } catch (e) {
    if (e instanceof FfmpegNotFoundError) return { path: null, source: null }
    throw e
  }
}

/** A report as aligned text lines for a terminal. */
export function formatDoctorReport(report: DoctorReport): string {
  const lines: string[] = []
  const row = (k: string, v: string) => lines.push(`${k.padEnd(10)}${v}`)
  row('node', report.node.version)
  row('venv', `${report.venv.path}${report.venv.exists ? '' : ' (missing)'}`)
  if (report.python) {
    const t = report.python.torch
    row('python', `${report.python.python.version}`)
    row('torch', `${t.version ?? t.error}${t.cuda_available ? ` (CUDA ${t.cuda_version})` : ' (CPU only)'}`)
    for (const gpu of t.gpus ?? [])
      row(`gpu ${gpu.index}`, `${gpu.name}, ${gpu.memory_gib} GiB, sm ${gpu.capability}`)
    const pk = report.python.packages
    row(
      'packages',
      Object.entries(pk)
        .map(([k, v]) => `${k} ${v ?? 'MISSING'}`)
        .join(', '),
    )
  }
  row('ffmpeg', report.ffmpeg.path ? `${report.ffmpeg.path} (${report.ffmpeg.source})` : 'not found')
  row('disk', `${report.disk.freeGiB} GiB free at ${report.disk.path}`)
  for (const f of report.findings) {
    lines.push(
      `${f.level === 'problem' ? 'PROBLEM' : 'note'}: ${f.message}${f.fix ? `\n  fix: ${f.fix}` : ''}`,
    )
  }
  if (!report.findings.some((f) => f.level === 'problem')) lines.push('ok: ready to run')
  return lines.join('\n')
}
