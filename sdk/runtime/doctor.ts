import { statfsSync } from 'node:fs'
import { execa } from 'execa'
import { FfmpegNotFoundError } from '../video/errors.js'
import { findFfmpeg } from '../video/ffmpeg.js'
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

export async function doctor(options: { venvDir?: string } = {}): Promise<DoctorReport> {
  const venvDir = resolveVenvDir(options.venvDir)
  const findings: DoctorFinding[] = []
  const [major, minor] = process.versions.node.split('.').map(Number)
  if (major! < MIN_NODE[0] || (major === MIN_NODE[0] && minor! < MIN_NODE[1])) {
    findings.push({
      level: 'problem',
      message: `Node ${process.versions.node} is older than ${MIN_NODE.join('.')}`,
      fix: 'install Node 20.19 or newer',
    })
  }

  let python: PythonDoctorReport | null = null
  const exists = venvExists(venvDir)
  if (!exists) {
    findings.push({
      level: 'problem',
      message: `no Python environment at ${venvDir}`,
      fix: 'ttt-video setup',
    })
  } else {
    const r = await execa(venvPython(venvDir), ['-m', 'ttt_video', 'doctor', '--json'], {
      reject: false,
      timeout: 120_000,
    })
    if (r.exitCode === 0) {
      python = JSON.parse(r.stdout) as PythonDoctorReport
    } else {
      findings.push({
        level: 'problem',
        message: `the Python environment at ${venvDir} is broken: ${r.stderr.trim().split('\n').at(-1) ?? r.shortMessage}`,
        fix: 'ttt-video setup --force',
      })
    }
  }

  if (python?.torch.error) {
    findings.push({
      level: 'problem',
      message: `torch does not import: ${python.torch.error}`,
      fix: 'ttt-video setup --force',
    })
  } else if (python && !python.torch.cuda_available) {
    findings.push({
      level: 'note',
      message: `no CUDA GPU visible to torch ${python.torch.version}: runs use the CPU, where only the tiny demo model is practical`,
      fix: 'on a GPU machine: ttt-video setup --cuda',
    })
  }
  for (const gpu of python?.torch.gpus ?? []) {
    if (!gpu.bf16)
      findings.push({
        level: 'note',
        message: `GPU ${gpu.index} (${gpu.name}) has no bf16: set parallelism.fsdp_unsharded_dtype and eval.dtype to float16 or float32`,
      })
  }

  const ffmpeg = await locateFfmpeg(venvDir)
  if (!ffmpeg.path) {
    findings.push({
      level: 'problem',
      message: 'no ffmpeg found (FFMPEG_PATH, PATH, or the imageio-ffmpeg package of the Python environment)',
      fix: 'ttt-video setup (installs imageio-ffmpeg), or apt-get install ffmpeg, or set FFMPEG_PATH',
    })
  }

  const diskPath = exists ? venvDir : process.cwd()
  const fs = statfsSync(diskPath)
  const freeGiB = Math.round(((fs.bavail * fs.bsize) / 2 ** 30) * 10) / 10
  if (freeGiB < BUNDLE_GIB) {
    findings.push({
      level: 'note',
      message: `${freeGiB} GiB free at ${diskPath}; a converted 5B model bundle needs about ${BUNDLE_GIB} GiB`,
    })
  }

  return {
    node: { version: process.versions.node },
    venv: { path: venvDir, exists },
    python,
    ffmpeg,
    disk: { path: diskPath, freeGiB },
    findings,
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
