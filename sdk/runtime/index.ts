export {
  type BridgeOptions,
  type BundleInfo,
  type CallOptions,
  type ConvertProgress,
  type ConvertWeightsOptions,
  callPython,
  closeBridge,
  convertWeights,
  doctorViaBridge,
  getBridge,
  inspectBundle,
  type PythonBridge,
  PythonBridgeError,
  PythonCallError,
  PythonCancelledError,
  PythonTimeoutError,
  startBridge,
} from './bridge.js'
export {
  type DoctorFinding,
  type DoctorReport,
  doctor,
  formatDoctorReport,
  type PythonDoctorReport,
} from './doctor.js'
export { packageRoot, resolveVenvDir, VENV_ENV, venvExists, venvPython } from './paths.js'
export { DEFAULT_TORCH_VERSION, type SetupOptions, type SetupResult, setupRuntime } from './setup.js'
