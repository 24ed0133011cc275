import { closeBridge } from '../python/bridge/index.js'

/**
 * The server's uses of the process's shared Python bridge: the doctor report. The bridge keeps a Python process (torch imported: hundreds of MiB) alive after a call, so the
 * server closes it as soon as none of its uses is left, and on shutdown: an idle server holds no Python.
 */
export class BridgeUses {
  private active = 0
  private used = false
  private closing: Promise<void> = Promise.resolve()

  /**
   * Runs `use`, which may open the bridge. The last use still running closes the bridge before it
   * resolves: once a doctor report is answered, its Python has gone.
   */
  async run<T>(use: () => Promise<T>): Promise<T> {
    await this.closing // a bridge that is closing cannot serve a call: wait until it is gone
    this.active++
    this.used = true
    try {
      return await use()
    } finally {
      this.active--
      if (this.active === 0) {
        this.closing = closeBridge().catch(() => {})
        await this.closing
      }
    }
  }

  /** Closes the bridge now if this server used it (it is stopping: a use still running fails). */
  async close(): Promise<void> {
    await this.closing
    if (this.used) await closeBridge().catch(() => {})
  }
}
