/**
 * Finding ffmpeg/ffprobe, and running them: every command is killed by an AbortSignal, fails with a typed
 * error that keeps ffmpeg's stderr, and writes its output under a temporary name that is renamed at the end.
 */
import { randomBytes } from 'node:crypto'
import { accessSync, constants, statSync } from 'node:fs'
import { rename, rm, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { basename, delimiter, dirname, extname, isAbsolute, join, resolve } from 'node:path'
import { execa } from 'execa'
import type { FfmpegCommand } from 'fluent-ffmpeg'
import { PythonCallError } from '../python/bridge/index.js'
import { resolveVenvDir } from '../python/paths.js'
import { FfmpegError, FfmpegNotFoundError, VideoCancelledError, VideoInputError } from './errors.js'
import { callVideoPython, VideoPythonUnavailable } from './python.js'

export interface FfmpegOptions {
  /** An ffmpeg binary to use (a path, or a name looked up on PATH); wins over everything else. */
  ffmpegPath?: string
  /** An ffprobe binary to use; wins over everything else. */
  ffprobePath?: string
  /** The managed Python environment, whose imageio-ffmpeg binary (and PyAV) are used as fallbacks. */
  venvDir?: string
  /** Where FFMPEG_PATH, FFPROBE_PATH and PATH are read (default: process.env). */
  env?: Record<string, string | undefined>
}

export interface VideoOptions extends FfmpegOptions {
  /** Kills ffmpeg; the call rejects with VideoCancelledError and leaves no output. */
  signal?: AbortSignal
}

export type BinarySource =
  | 'option'
  | 'FFMPEG_PATH'
  | 'FFPROBE_PATH'
  | 'PATH'
  | 'next to ffmpeg'
  | 'imageio-ffmpeg'
  | '@ffmpeg-installer/ffmpeg'
  | '@ffprobe-installer/ffprobe'

export interface FfmpegBinaries {
  ffmpeg: string
  ffmpegSource: BinarySource
  /** null when there is none (imageio-ffmpeg ships no ffprobe); `probe` then reads files with PyAV. */
  ffprobe: string | null
  ffprobeSource: BinarySource | null
}

const cache = new Map<string, Promise<FfmpegBinaries>>()

/**
 * Finds ffmpeg, in this order: `ffmpegPath`, $FFMPEG_PATH, PATH, the imageio-ffmpeg binary of the
 * managed Python environment, the `@ffmpeg-installer/ffmpeg` npm package if installed. ffprobe:
 * `ffprobePath`, $FFPROBE_PATH, PATH, next to the ffmpeg found, `@ffprobe-installer/ffprobe`.
 * Throws FfmpegNotFoundError, which says how to get one. Results are cached per set of inputs.
 */
export function findFfmpeg(options: FfmpegOptions = {}): Promise<FfmpegBinaries> {
  const env = options.env ?? process.env
  const key = JSON.stringify([
    options.ffmpegPath,
    options.ffprobePath,
    resolveVenvDir(options.venvDir),
    env.FFMPEG_PATH,
    env.FFPROBE_PATH,
    env.PATH,
  ])
  let found = cache.get(key)
  if (!found) {
    found = search(options, env)
    cache.set(key, found)
    found.catch(() => cache.delete(key))
  }
  return found
}

function isExecutable(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

function onPath(name: string, pathVar: string | undefined): string | null {
  for (const dir of (pathVar ?? '').split(delimiter)) {
    if (!dir) continue
    const file = join(dir, name)
    if (isExecutable(file)) return file
  }
  return null
}

/** An explicit choice (option or env var) must work: a silent fallback would hide a typo. */
function explicit(value: string, what: string, pathVar: string | undefined): string {
  const file = isAbsolute(value) || value.includes('/') ? resolve(value) : onPath(value, pathVar)
  if (file && isExecutable(file)) return file
  throw new FfmpegNotFoundError(
    `${what} is set to "${value}", which is not an executable file; fix or unset it`,
    [`${what}: ${value} (not executable)`],
  )
}

function npmBinary(pkg: string): string | null {
  try {
    const required = createRequire(import.meta.url)(pkg) as { path?: string }
    return required.path && isExecutable(required.path) ? required.path : null
  } catch {
    return null
  }
}

/** Asks the managed environment's Python (through the bridge) for imageio-ffmpeg's binary. */
async function imageioFfmpeg(venvDir: string): Promise<{ path: string | null; note: string }> {
  try {
    const path = await callVideoPython<string>('ffmpeg_executable', {}, 'finding imageio-ffmpeg', {
      venvDir,
      timeoutMs: 60_000,
    })
    if (isExecutable(path)) return { path, note: path }
    return { path: null, note: `imageio-ffmpeg named ${path}, which is not an executable file` }
  } catch (e) {
    if (e instanceof VideoPythonUnavailable) return { path: null, note: e.message }
    if (e instanceof PythonCallError) return { path: null, note: e.pythonMessage }
    throw e
  }
}

async function search(
  options: FfmpegOptions,
  env: Record<string, string | undefined>,
): Promise<FfmpegBinaries> {
  const searched: string[] = []
  let ffmpeg: string | null = null
  let ffmpegSource: BinarySource | null = null
  if (options.ffmpegPath) {
    ffmpeg = explicit(options.ffmpegPath, 'the ffmpegPath option', env.PATH)
    ffmpegSource = 'option'
  } else if (env.FFMPEG_PATH) {
    ffmpeg = explicit(env.FFMPEG_PATH, 'FFMPEG_PATH', env.PATH)
    ffmpegSource = 'FFMPEG_PATH'
  } else {
    searched.push('FFMPEG_PATH: unset')
    ffmpeg = onPath('ffmpeg', env.PATH)
    ffmpegSource = 'PATH'
    if (!ffmpeg) {
      searched.push(`PATH: no ffmpeg in ${env.PATH || '(empty)'}`)
      const venvDir = resolveVenvDir(options.venvDir)
      const imageio = await imageioFfmpeg(venvDir)
      ffmpeg = imageio.path
      ffmpegSource = 'imageio-ffmpeg'
      if (!ffmpeg) searched.push(`imageio-ffmpeg in ${venvDir}: ${imageio.note}`)
    }
    if (!ffmpeg) {
      ffmpeg = npmBinary('@ffmpeg-installer/ffmpeg')
      ffmpegSource = '@ffmpeg-installer/ffmpeg'
      if (!ffmpeg) searched.push('@ffmpeg-installer/ffmpeg: not installed')
    }
  }
  if (!ffmpeg || !ffmpegSource) {
    throw new FfmpegNotFoundError(
      [
        'no ffmpeg found. Looked at:',
        ...searched.map((s) => `  ${s}`),
        'Get one with any of:',
        '  npx ttt-video setup          (the Python environment brings imageio-ffmpeg)',
        '  apt-get install ffmpeg       (or your system package manager)',
        '  export FFMPEG_PATH=/path/to/ffmpeg',
      ].join('\n'),
      searched,
    )
  }

  const [ffprobe, ffprobeSource] = findFfprobe(options, env, ffmpeg)
  return { ffmpeg, ffmpegSource, ffprobe, ffprobeSource }
}

function findFfprobe(
  options: FfmpegOptions,
  env: Record<string, string | undefined>,
  ffmpeg: string,
): [string, BinarySource] | [null, null] {
  if (options.ffprobePath)
    return [explicit(options.ffprobePath, 'the ffprobePath option', env.PATH), 'option']
  if (env.FFPROBE_PATH) return [explicit(env.FFPROBE_PATH, 'FFPROBE_PATH', env.PATH), 'FFPROBE_PATH']
  const path = onPath('ffprobe', env.PATH)
  if (path) return [path, 'PATH']
  const sibling = join(dirname(ffmpeg), basename(ffmpeg).replace(/ffmpeg/, 'ffprobe'))
  if (sibling !== ffmpeg && isExecutable(sibling)) return [sibling, 'next to ffmpeg']
  const npm = npmBinary('@ffprobe-installer/ffprobe')
  if (npm) return [npm, '@ffprobe-installer/ffprobe']
  return [null, null]
}

/** Throws VideoInputError unless `file` is an existing file. */
export async function requireFile(file: string, what = 'input video'): Promise<string> {
  const path = resolve(file)
  const st = await stat(path).catch(() => null)
  if (!st?.isFile()) throw new VideoInputError(`${what} ${path} does not exist or is not a file`)
  return path
}

/** `dir/name.mp4` + `.preview.gif` -> `dir/name.preview.gif`. */
export function siblingPath(file: string, suffix: string): string {
  const ext = extname(file)
  return join(dirname(resolve(file)), `${basename(file, ext)}${suffix}`)
}

/**
 * Runs `write(tmp)` with a temporary path next to `out` (same folder, so the rename is atomic; same
 * extension, so ffmpeg picks the same format), then renames it to `out`. On failure the temporary file
 * is removed and `out` is left as it was.
 */
export async function writeAtomically<T>(out: string, write: (tmp: string) => Promise<T>): Promise<T> {
  const target = resolve(out)
  const ext = extname(target)
  const tmp = join(
    dirname(target),
    `.${basename(target, ext)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp${ext}`,
  )
  try {
    const result = await write(tmp)
    const st = await stat(tmp).catch(() => null)
    if (!st || st.size === 0) throw new VideoInputError(`ffmpeg wrote nothing for ${target}`)
    await rename(tmp, target)
    return result
  } catch (e) {
    await rm(tmp, { force: true })
    throw e
  }
}

/** Runs ffmpeg (or ffprobe) with an explicit argument list; resolves to its stdout. */
export async function runFfmpeg(
  binary: string,
  args: string[],
  what: string,
  signal?: AbortSignal,
): Promise<string> {
  if (signal?.aborted) throw new VideoCancelledError(what, signal.reason)
  const r = await execa(binary, args, {
    reject: false,
    stdin: 'ignore',
    maxBuffer: 64 * 2 ** 20,
    ...(signal ? { cancelSignal: signal, forceKillAfterDelay: 2000 } : {}),
  })
  if (r.isCanceled || signal?.aborted) throw new VideoCancelledError(what, signal?.reason)
  if (r.failed) throw new FfmpegError(what, [binary, ...args], r.exitCode, r.stderr || r.message || '')
  return r.stdout
}

/** Runs a fluent-ffmpeg command that writes `output`; an AbortSignal kills ffmpeg. */
export function runFluent(command: FfmpegCommand, output: string, what: string, signal?: AbortSignal) {
  return new Promise<void>((resolvePromise, reject) => {
    if (signal?.aborted) return reject(new VideoCancelledError(what, signal.reason))
    let args: string[] = []
    let started = false
    // Before ffmpeg is spawned (fluent-ffmpeg first checks formats and codecs) kill() is a no-op;
    // the 'start' handler kills it then.
    const onAbort = () => started && command.kill('SIGKILL')
    signal?.addEventListener('abort', onAbort, { once: true })
    const done = (e?: Error) => {
      signal?.removeEventListener('abort', onAbort)
      if (e) reject(e)
      else resolvePromise()
    }
    command
      .on('start', (line: string) => {
        started = true
        args = line.split(' ')
        if (signal?.aborted) command.kill('SIGKILL')
      })
      .on('error', (err: Error, _stdout: string | null, stderr: string | null) => {
        if (signal?.aborted) done(new VideoCancelledError(what, signal.reason))
        else done(new FfmpegError(what, args, undefined, stderr || err.message))
      })
      .on('end', () => done())
      .save(output)
  })
}
