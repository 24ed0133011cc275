/** The options and the interface of a bridge (the implementation is in open.ts). */

export interface BridgeOptions {
  /** The managed virtual environment (default: $TTT_VIDEO_VENV or <package>/.venv). */
  venvDir?: string
  /** The interpreter; overrides `venvDir`. It must be able to import `ttt_video`. */
  python?: string
  /** Folders put first on Python's sys.path, where `call` targets are imported from. */
  sysPath?: string[]
  /** Extra environment for the Python process (e.g. CUDA_VISIBLE_DEVICES). */
  env?: Record<string, string>
}

export interface CallOptions {
  /**
   * Receives each event the target reports. Targets that take a `progress` parameter get a function to
   * call with one JSON-able event per step; NaN/infinity in events arrive as null.
   */
  onProgress?: (event: unknown) => void
  /** Rejects with PythonTimeoutError after this long and asks Python to stop (default: no limit). */
  timeoutMs?: number
  /**
   * Cancels the call. Python stops at the target's next progress report (it raises
   * `ttt_video.bridge_facade.Cancelled`) and the call then rejects with PythonCancelledError. A target
   * that reports no progress runs to its end; `close()` the bridge to stop it at once.
   */
  signal?: AbortSignal
}

export interface PythonBridge {
  /** The Python process id (undefined once closed). */
  readonly pid: number | undefined
  /** The interpreter the bridge runs. */
  readonly python: string
  readonly closed: boolean
  /**
   * Calls the Python function `target` (`package.module.function`) with `args` as keyword arguments and
   * resolves to its JSON-decoded return value. Calls run one at a time, in order.
   */
  call<T = unknown>(target: string, args?: Record<string, unknown>, options?: CallOptions): Promise<T>
  /** Stops Python (SIGTERM, then SIGKILL after 5 s) and rejects pending calls; resolves when it is gone. */
  close(): Promise<void>
}
