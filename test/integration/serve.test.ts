import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { connect, createServer as createNetServer, type Server as NetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServer, PortInUseError } from '../../sdk/server/index.js'
import { alive, descendants, ROOT } from '../helpers.js'

// `ttt-video serve` as a process (the built CLI): its token file, a port in use, and supervisors that
// stop it. The job service itself is tested in server.test.ts.

const tmp = mkdtempSync(join(tmpdir(), 'ttt-serve-'))
const CLI = join(ROOT, 'dist', 'cli', 'main.js')
const TOKEN = 'test-token-0123456789abcdef'

/** A CLI process (`node dist/cli/main.js ...`, or any command) and its stderr as it comes. */
function launch(command: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(command, args, { env: { ...process.env, TTT_VIDEO_TOKEN: TOKEN, ...env } })
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString()
  })
  const waitFor = async (pattern: RegExp): Promise<RegExpExecArray> => {
    for (let i = 0; i < 600; i++) {
      const m = pattern.exec(stderr)
      if (m) return m
      await new Promise((r) => setTimeout(r, 50))
    }
    throw new Error(`no ${pattern} in: ${stderr}`)
  }
  return { child, waitFor, stderr: () => stderr }
}

/** Resolves once `pid` has gone; the milliseconds it took. */
async function gone(pid: number, limitMs: number): Promise<number> {
  const t0 = performance.now()
  while (alive(pid) && performance.now() - t0 < limitMs) await new Promise((r) => setTimeout(r, 50))
  return performance.now() - t0
}

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.on('connect', () => resolve(!socket.destroy()))
    socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'))
  })

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode)
    else child.on('exit', (code) => resolve(code))
  })

describe('ttt-video serve', () => {
  it('writes a generated token only once listening; keeps it for the next start; one server per jobs dir', async () => {
    const dir = join(tmp, 'token-jobs')
    const first = createServer({ port: 0, jobsDir: dir, env: {} })
    expect(first.tokenSource).toBe('generated')
    expect(existsSync(join(dir, 'token'))).toBe(false)
    await first.listen()
    expect(readFileSync(join(dir, 'token'), 'utf8').trim()).toBe(first.token)
    const second = createServer({ port: 0, jobsDir: dir, env: {} })
    expect([second.tokenSource, second.token]).toEqual(['file', first.token])
    expect(createServer({ port: 0, jobsDir: dir, env: { TTT_VIDEO_TOKEN: TOKEN } }).tokenSource).toBe('env')
    await expect(second.listen()).rejects.toThrow(/in use by another server/)
    await first.close()
  })

  describe('on a port in use', () => {
    let taken: NetServer
    let port: number
    beforeAll(async () => {
      taken = createNetServer()
      await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r))
      port = (taken.address() as { port: number }).port
    })
    afterAll(() => new Promise<void>((r) => taken.close(() => r())))

    it('listen() says so and leaves no token that nobody saw', async () => {
      const dir = join(tmp, 'busy-jobs')
      const busy = createServer({ port, jobsDir: dir, env: {} })
      await expect(busy.listen()).rejects.toThrow(PortInUseError)
      await expect(busy.listen()).rejects.toThrow(/port \d+ on 127\.0\.0\.1 is already in use.*--port N/)
      expect(existsSync(join(dir, 'token'))).toBe(false)
    })

    it('ttt-video serve says which flag chooses another port', async () => {
      const dir = join(tmp, 'busy-cli-jobs')
      const cli = launch('node', [CLI, 'serve', '--port', String(port), '--jobs-dir', dir], {
        TTT_VIDEO_TOKEN: '',
      })
      expect(await exited(cli.child)).toBe(2)
      expect(cli.stderr()).toMatch(new RegExp(`port ${port} on 127.0.0.1 is already in use.*--port N`))
      expect(cli.stderr()).not.toMatch(/generated a token/)
      expect(existsSync(join(dir, 'token'))).toBe(false)
    })
  })

  describe('under a supervisor, ttt-video serve', () => {
    const listening = /listening on http:\/\/127\.0\.0\.1:(\d+)/

    it('stops on SIGTERM: the process exits 0 and the port is free', async () => {
      const cli = launch('node', [CLI, 'serve', '--port', '0', '--jobs-dir', join(tmp, 'term-jobs')])
      const port = Number((await cli.waitFor(listening))[1])
      cli.child.kill('SIGTERM')
      expect(await exited(cli.child)).toBe(0)
      expect(cli.stderr()).toMatch(/SIGTERM: stopping/)
      expect(await refused(port)).toBe(true)
    }, 60_000)

    it('stops when its launcher (a shell) is killed with SIGTERM', async () => {
      const serve = `node ${CLI} serve --port 0 --jobs-dir ${join(tmp, 'orphan-jobs')}`
      const shell = launch('sh', ['-c', `${serve} & wait`])
      const port = Number((await shell.waitFor(listening))[1])
      const [node] = descendants(shell.child.pid!)
      expect(readFileSync(`/proc/${node}/cmdline`, 'utf8')).toContain('serve')
      shell.child.kill('SIGTERM')
      await exited(shell.child)
      expect(await gone(node!, 10_000)).toBeLessThan(5000)
      expect(shell.stderr()).toMatch(/the launcher \(pid \d+\) has gone: stopping/)
      expect(await refused(port)).toBe(true)
    }, 60_000)
  })
})
