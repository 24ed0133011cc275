/**
 * The in-process Python bridge: pythonia (JSPyBridge) behind one JSON-in/JSON-out call.
 *
 * pythonia runs one Python child per Node process and exposes Python objects as proxies. We use none of
 * that: the only call is `ttt_video.bridge_facade.call(target, argsJson, progress)`, which answers a JSON
 * string (see python/ttt_video/bridge_facade.py). On top of it this folder adds what pythonia lacks:
 * typed errors with the Python traceback (errors.ts, call.ts), calls run one at a time (queue.ts), a dead
 * Python rejects pending calls at once and Node exits when nothing is running (liveness.ts), the child dies
 * with Node, timeouts and AbortSignals that stop the Python work cooperatively (call.ts). See docs/bridge.md.
 */
export {
  type BundleComponentInfo,
  type BundleReport,
  inspectBundle,
  type SafetensorsFileInfo,
} from './bundle.js'
export { PythonBridgeError, PythonCallError, PythonCancelledError, PythonTimeoutError } from './errors.js'
export { callPython, closeBridge, getBridge, startBridge } from './shared.js'
export type { BridgeOptions, CallOptions, PythonBridge } from './types.js'
