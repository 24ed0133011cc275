import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import ffmpeg from 'fluent-ffmpeg'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { previewCommand } from '../../sdk/cli/commands/preview.js'
import { probeCommand } from '../../sdk/cli/commands/probe.js'
import { UsageError } from '../../sdk/cli/flags.js'
import { closeBridge } from '../../sdk/python/bridge/index.js'
import { runFfmpeg, runFluent, writeAtomically } from '../../sdk/video/ffmpeg.js'
import {
  concat,
  contactSheet,
  evenlySpacedFrames,
  FfmpegError,
  FfmpegNotFoundError,
  findFfmpeg,
  poster,
  preview,
  probe,
  probeWarnings,
  subtitleCues,
  subtitles,
  VideoCancelledError,
  VideoInputError,
} from '../../sdk/video/index.js'

// Real ffmpeg (whatever findFfmpeg finds: on a fresh machine the venv's imageio-ffmpeg) and real PyAV
// through the Python bridge (or ffprobe when one is installed). Videos are made here: 64x48 unless said,
// 16 fps, a moving gradient.
const tmp = mkdtempSync(join(tmpdir(), 'ttt-video-'))
let bin: string

async function makeVideo(
  file: string,
  frames: number,
  size = '64x48',
  extra: string[] = [],
): Promise<string> {
  const gradient = `nullsrc=s=${size}:r=16,format=rgb24,geq=r='mod(4*X+8*N,256)':g='mod(5*Y+4*N,256)':b='mod(2*(X+Y)+16*N,256)'`
  await execa(bin, [
    ...['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', gradient],
    ...['-frames:v', String(frames), '-c:v', 'libx264', '-pix_fmt', 'yuv420p', ...extra, file],
  ])
  return file
}

/** Width and height from a PNG's IHDR chunk. */
function pngSize(file: string): [number, number] {
  const b = readFileSync(file)
  expect(b.subarray(1, 4).toString()).toBe('PNG')
  return [b.readUInt32BE(16), b.readUInt32BE(20)]
}

const leftovers = (dir: string) => readdirSync(dir).filter((f) => f.includes('.tmp'))

let clip49: string
let runDir: string

beforeAll(async () => {
  bin = (await findFfmpeg()).ffmpeg
  clip49 = await makeVideo(join(tmp, 'clip49.mp4'), 49)
  runDir = join(tmp, 'run', 'prompt-0')
  mkdirSync(runDir, { recursive: true })
  await makeVideo(join(runDir, 'video.mp4'), 145) // 3 segments: 3 x 48 + 1 frames
  writeFileSync(
    join(runDir, 'prompt.txt'),
    '<start_scene>A fox runs through snow.<end_scene>\n\n<start_scene>The fox jumps <over> a log & lands.<end_scene>\n\n<start_scene>The fox sleeps.<end_scene>\n',
  )
  writeFileSync(join(runDir, 'meta.json'), JSON.stringify({ seed: 1, fps: 16, frames: 145 }))
})

afterAll(async () => {
  rmSync(tmp, { recursive: true, force: true })
  await closeBridge()
})

/** Runs a CLI command function with stdout and stderr captured. */
async function captured(
  run: () => Promise<number>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const text = { stdout: '', stderr: '' }
  const spies = (['stdout', 'stderr'] as const).map((name) =>
    vi.spyOn(process[name], 'write').mockImplementation((chunk: string | Uint8Array) => {
      text[name] += String(chunk)
      return true
    }),
  )
  try {
    return { code: await run(), ...text }
  } finally {
    for (const spy of spies) spy.mockRestore()
  }
}

describe('findFfmpeg', () => {
  it('finds a working ffmpeg', async () => {
    const found = await findFfmpeg()
    const r = await execa(found.ffmpeg, ['-hide_banner', '-version'])
    expect(r.stdout).toMatch(/^ffmpeg version/)
  })

  it('says how to get ffmpeg when there is none', async () => {
    const err = await findFfmpeg({ env: { PATH: '/nonexistent' }, venvDir: join(tmp, 'no-venv') }).catch(
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(FfmpegNotFoundError)
    const message = (err as Error).message
    expect(message).toMatch(/^no ffmpeg found/)
    expect(message).toContain(`no Python environment at ${join(tmp, 'no-venv')}`)
    expect(message).toContain('npx ttt-video setup')
    expect(message).toContain('apt-get install ffmpeg')
    expect(message).toContain('FFMPEG_PATH')
    expect((err as FfmpegNotFoundError).code).toBe('FFMPEG_MISSING')
    // Every tool reports it the same way.
    await expect(
      preview(clip49, { env: { PATH: '/nonexistent' }, venvDir: join(tmp, 'no-venv') }),
    ).rejects.toBeInstanceOf(FfmpegNotFoundError)
  })

  it('rejects an FFMPEG_PATH that is not an executable instead of falling back', async () => {
    await expect(findFfmpeg({ env: { FFMPEG_PATH: join(tmp, 'nope') } })).rejects.toThrow(
      /FFMPEG_PATH is set to ".*nope", which is not an executable file/,
    )
  })
})

describe('probe', () => {
  it('reports exact frames, fps and duration', async () => {
    const info = await probe(clip49)
    expect(info).toMatchObject({
      frames: 49,
      fps: 16,
      duration: 49 / 16,
      width: 64,
      height: 48,
      codec: 'h264',
      pixelFormat: 'yuv420p',
      streams: [{ index: 0, type: 'video', codec: 'h264' }],
    })
    expect(info.containerDuration).toBeCloseTo(3.0625, 3)
    expect(info.warnings).toEqual([])
    const cli = await captured(() => probeCommand.run([clip49], {}))
    expect(cli).toMatchObject({ code: 0, stdout: expect.stringContaining('49 frames at 16 fps'), stderr: '' })
  })

  it('fails with a typed error on a missing or broken file', async () => {
    await expect(probe(join(tmp, 'missing.mp4'))).rejects.toBeInstanceOf(VideoInputError)
    writeFileSync(join(tmp, 'broken.mp4'), 'not a video')
    const broken = await probe(join(tmp, 'broken.mp4')).catch((e: unknown) => e)
    // PyAV (through the bridge) and ffprobe both report it as a failed read of that file.
    expect(broken).toBeInstanceOf(FfmpegError)
    expect((broken as Error).message).toMatch(/broken\.mp4/)
  })

  it('warns, and the CLI exits 1, when the frames present disagree with the header (a truncated mp4)', async () => {
    // faststart puts the header (49 frames, 3.0625 s) first, so the cut file still opens.
    const whole = await makeVideo(join(tmp, 'whole.mp4'), 49, '64x48', ['-movflags', '+faststart'])
    const bytes = readFileSync(whole)
    const cut = join(tmp, 'cut.mp4')
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)))
    const info = await probe(cut)
    expect(info.frames).toBeGreaterThan(0)
    expect(info.frames).toBeLessThan(45)
    expect(info.warnings.join('\n')).toContain(`its header declares 49 frames but ${info.frames} are present`)
    expect(info.warnings.join('\n')).toMatch(/declares 3\.063 s \(more than one frame apart\)/)
    expect(info.warnings.every((w) => w.startsWith(cut) && w.includes('probably truncated'))).toBe(true)
    const cli = await captured(() => probeCommand.run([cut], {}))
    expect(cli.code).toBe(1)
    expect(cli.stdout).toContain(`${info.frames} frames at 16 fps`)
    expect(cli.stderr).toContain(`warning: ${info.warnings[0]}`)
  })

  it('tolerates one frame interval between the counted and the declared duration, no more', () => {
    const facts = { file: 'v.mp4', frames: 49, fps: 16, declaredFrames: null, containerDuration: null }
    expect(probeWarnings({ ...facts, streamDuration: 49 / 16 + 1 / 16 })).toEqual([])
    expect(probeWarnings({ ...facts, streamDuration: 49 / 16 - 1 / 16 })).toEqual([])
    expect(probeWarnings({ ...facts, streamDuration: 49 / 16 + 1.01 / 16 })).toHaveLength(1)
    // The stream's duration wins over the container's (which may include a longer audio track).
    expect(probeWarnings({ ...facts, streamDuration: 49 / 16, containerDuration: 9 })).toEqual([])
    expect(probeWarnings({ ...facts, streamDuration: null, containerDuration: 9 })[0]).toContain(
      'the container declares 9.000 s',
    )
    expect(probeWarnings({ ...facts, streamDuration: null, declaredFrames: 50 })[0]).toContain(
      'its header declares 50 frames but 49 are present',
    )
    expect(probeWarnings({ ...facts, streamDuration: null, readError: 'reading packet 50 failed' })).toEqual([
      'v.mp4: reading packet 50 failed after 49 frames; the file is probably truncated or damaged; write or download it again',
    ])
  })

  it('says how to fix a missing PyAV when there is no ffprobe either', async () => {
    const noVenv = join(tmp, 'no-venv')
    const err = await probe(clip49, { env: { PATH: '/nonexistent' }, venvDir: noVenv }).catch(
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(FfmpegNotFoundError)
    expect((err as Error).message).toContain(`no Python environment at ${noVenv}`)
    expect((err as Error).message).toContain('npx ttt-video setup')
  })
})

describe('previews', () => {
  it('writes a GIF and a WebM preview', async () => {
    const gif = await preview(clip49, { format: 'gif', width: 32 })
    expect(gif).toBe(join(tmp, 'clip49.preview.gif'))
    expect(await probe(gif)).toMatchObject({ codec: 'gif', width: 32, height: 24, frames: 49, warnings: [] })
    const webm = await preview(clip49, { format: 'webm', width: 32, out: join(tmp, 'p.webm') })
    const vp9 = { codec: 'vp9', width: 32, height: 24, frames: 49, fps: 16, warnings: [] }
    expect(await probe(webm)).toMatchObject(vp9)
    expect(leftovers(tmp)).toEqual([])
  })

  it('never upscales by default: the source width, at most 320', async () => {
    const small = await makeVideo(join(tmp, 'small96.mp4'), 8, '96x64')
    const gif = await preview(small, { out: join(tmp, 'small96.gif') })
    expect(await probe(gif)).toMatchObject({ width: 96, height: 64, frames: 8 })
    const webm = await preview(small, { format: 'webm', out: join(tmp, 'small96.webm') })
    expect(await probe(webm)).toMatchObject({ width: 96, height: 64, frames: 8 })
    const large = await makeVideo(join(tmp, 'large.mp4'), 2, '640x360')
    expect(await probe(await preview(large))).toMatchObject({ width: 320, height: 180, frames: 2 })
    // Asked for: an explicit width may upscale.
    expect(await probe(await preview(small, { width: 128, out: join(tmp, 'up.gif') }))).toMatchObject({
      width: 128,
      height: 85,
    })
  })

  it('rejects a width that is not a positive integer, in the API and the CLI', async () => {
    for (const width of [0, -32, 1.5, Number.NaN]) {
      const out = join(tmp, `w${width}.gif`)
      await expect(preview(clip49, { width, out })).rejects.toThrow(
        new RegExp(`preview width must be a positive integer, got ${width}`),
      )
      expect(existsSync(out)).toBe(false)
    }
    await expect(preview(clip49, { width: 0 })).rejects.toBeInstanceOf(VideoInputError)
    for (const width of ['0', '-32', '1.5', '', 'abc']) {
      await expect(previewCommand.run([clip49], { width, out: join(tmp, 'cli.gif') })).rejects.toThrow(
        new UsageError(`--width must be a positive integer (pixels), got "${width}"`),
      )
    }
    expect(existsSync(join(tmp, 'cli.gif'))).toBe(false)
    const cli = await captured(() => previewCommand.run([clip49], { width: '16', out: join(tmp, 'cli.gif') }))
    expect(cli).toMatchObject({ code: 0, stdout: `${join(tmp, 'cli.gif')}\n` })
    expect(await probe(join(tmp, 'cli.gif'))).toMatchObject({ width: 16, height: 12 })
  })

  it('writes a poster PNG', async () => {
    const first = await poster(clip49)
    expect(first).toBe(join(tmp, 'clip49.poster.png'))
    expect(pngSize(first)).toEqual([64, 48])
    const later = await poster(clip49, { time: 2, width: 32, out: join(tmp, 'later.png') })
    expect(pngSize(later)).toEqual([32, 24])
    expect(readFileSync(later).equals(readFileSync(first))).toBe(false)
    await expect(poster(clip49, { time: 5, out: join(tmp, 'late.png') })).rejects.toThrow(/past the end/)
    expect(existsSync(join(tmp, 'late.png'))).toBe(false)
  })

  it('writes a contact sheet of evenly spaced frames', async () => {
    const sheet = await contactSheet(clip49, { columns: 4, rows: 2, width: 128 })
    expect(sheet).toMatchObject({ width: 128, height: 48, tileWidth: 32, tileHeight: 24 })
    expect(sheet.frames).toEqual([0, 7, 14, 21, 27, 34, 41, 48])
    expect(pngSize(sheet.path)).toEqual([128, 48])
  })

  it('spreads frames evenly', () => {
    expect(evenlySpacedFrames(49, 4)).toEqual([0, 16, 32, 48])
    expect(evenlySpacedFrames(3, 5)).toEqual([0, 1, 2])
    expect(evenlySpacedFrames(9, 1)).toEqual([4])
  })
})

describe('subtitles', () => {
  const VTT = `WEBVTT

1
00:00.000 --> 00:03.000
A fox runs through snow.

2
00:03.000 --> 00:06.000
The fox jumps &lt;over&gt; a log &amp; lands.

3
00:06.000 --> 00:09.063
The fox sleeps.
`

  it('makes one cue per segment from a run folder, scene tokens stripped', async () => {
    const vtt = await subtitles(runDir, { format: 'vtt' })
    expect(vtt.text).toBe(VTT)
    expect(vtt.path).toBe(join(runDir, 'video.vtt'))
    expect(readFileSync(vtt.path!, 'utf8')).toBe(VTT)
    expect(vtt.cues.map((c) => [c.start, c.end])).toEqual([
      [0, 3],
      [3, 6],
      [6, 9.0625],
    ])
    const srt = await subtitles(runDir, { format: 'srt' })
    expect(srt.text).toBe(
      '1\n00:00:00,000 --> 00:00:03,000\nA fox runs through snow.\n\n' +
        '2\n00:00:03,000 --> 00:00:06,000\nThe fox jumps <over> a log & lands.\n\n' +
        '3\n00:00:06,000 --> 00:00:09,063\nThe fox sleeps.\n',
    )
    expect(leftovers(runDir)).toEqual([])
  })

  it('takes segments directly', async () => {
    const r = await subtitles({ segments: ['a', 'b'] }, { format: 'vtt' })
    expect(r.path).toBeNull()
    expect(r.cues.map((c) => c.end)).toEqual([3, 6.0625])
    expect(subtitleCues({ segments: ['a', 'b'], secondsPerSegment: 2, fps: 8, frames: 20 }).at(-1)).toEqual({
      index: 2,
      start: 2,
      end: 2.5,
      text: 'b',
    })
    expect(() => subtitleCues({ segments: ['a', 'b', 'c'], frames: 49 })).toThrow(/too short for 3 segments/)
  })

  it('muxes a mov_text track into a copy of the video', async () => {
    const r = await subtitles(runDir, { format: 'vtt', mux: true })
    expect(r.muxed).toBe(join(runDir, 'video.subtitled.mp4'))
    const info = await probe(r.muxed!)
    expect(info.frames).toBe(145)
    expect(info.warnings).toEqual([])
    expect(info.streams.map((s) => [s.type, s.codec])).toEqual([
      ['video', 'h264'],
      ['subtitle', 'mov_text'],
    ])
    expect(leftovers(runDir)).toEqual([])
  })

  it('reports a folder without prompts', async () => {
    await expect(subtitles(tmp)).rejects.toThrow(/prompt\.txt is missing/)
  })
})

describe('concat', () => {
  it('joins clips of identical parameters; frames add up', async () => {
    const a = await makeVideo(join(tmp, 'a.mp4'), 16)
    const b = await makeVideo(join(tmp, 'b.mp4'), 33)
    const r = await concat([a, b, a], join(tmp, 'joined.mp4'))
    expect(r.frames).toBe(65)
    const info = await probe(r.path)
    expect(info).toMatchObject({ frames: 65, fps: 16, width: 64, height: 48, codec: 'h264', warnings: [] })
    expect(leftovers(tmp)).toEqual([])
  })

  it('refuses clips that differ', async () => {
    const small = await makeVideo(join(tmp, 'small.mp4'), 16, '32x24')
    await expect(concat([clip49, small], join(tmp, 'bad.mp4'))).rejects.toThrow(
      /small\.mp4 has width 32 but .*clip49\.mp4 has 64/,
    )
    expect(existsSync(join(tmp, 'bad.mp4'))).toBe(false)
  })
})

describe('cancellation', () => {
  it('an aborted signal stops before ffmpeg runs', async () => {
    const signal = AbortSignal.abort(new Error('stop'))
    await expect(preview(clip49, { signal, out: join(tmp, 'x.gif') })).rejects.toBeInstanceOf(
      VideoCancelledError,
    )
    await expect(concat([clip49], join(tmp, 'x.mp4'), { signal })).rejects.toBeInstanceOf(VideoCancelledError)
    await expect(probe(clip49, { signal })).rejects.toBeInstanceOf(VideoCancelledError)
    expect(existsSync(join(tmp, 'x.gif')) || existsSync(join(tmp, 'x.mp4'))).toBe(false)
  })

  it('kills a running ffmpeg and leaves no output (fluent-ffmpeg and execa paths)', async () => {
    // -re reads at the native rate: 145 frames take 9 s, so the abort lands mid-run.
    const slowFluent = (signal: AbortSignal) =>
      writeAtomically(join(tmp, 'slow1.mp4'), (t) =>
        runFluent(
          ffmpeg(join(runDir, 'video.mp4')).setFfmpegPath(bin).native().videoCodec('libx264').format('mp4'),
          t,
          'slow encode',
          signal,
        ),
      )
    const slowExeca = (signal: AbortSignal) =>
      writeAtomically(join(tmp, 'slow2.mp4'), (t) =>
        runFfmpeg(
          bin,
          ['-y', '-re', '-i', join(runDir, 'video.mp4'), '-c', 'copy', '-f', 'mp4', t],
          'slow copy',
          signal,
        ),
      )
    for (const run of [slowFluent, slowExeca]) {
      const started = Date.now()
      await expect(run(AbortSignal.timeout(400))).rejects.toBeInstanceOf(VideoCancelledError)
      expect(Date.now() - started).toBeLessThan(4000)
    }
    expect(readdirSync(tmp).filter((f) => f.includes('slow'))).toEqual([])
  })
})
