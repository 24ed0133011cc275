// The public API of ttt-video: what users call, and the types of what they get back. The HTTP service
// is a separate export, `ttt-video/server`.

export { type BundleInfo, checkBundle } from './contracts/bundle.js'
export { resolveConfig } from './contracts/config/load.js'
export type { JobConfig, JobConfigInput } from './contracts/config/schema.js'
export {
  ERROR_CODES,
  type ErrorCode,
  type EventOf,
  type RunEvent,
  type RunEventType,
} from './contracts/events.js'
export { foldEvents, type RunProgress } from './contracts/fold.js'
export type { EvalPreset, TrainPreset } from './contracts/presets.gen.js'
export type { VideoMeta } from './contracts/run-dir.js'
export {
  readStoryboardFile,
  type Segment,
  type SegmentPrompts,
  segmentPrompts,
  type Video,
  validateStoryboards,
} from './contracts/storyboard.js'
export {
  CancelledError,
  ConfigError,
  DataError,
  DistributedError,
  type InputIssue,
  NonFiniteError,
  OutOfMemoryError,
  PythonRuntimeError,
  RunFailedError,
  type RunFailure,
  StoryboardError,
  TttVideoError,
  WeightsError,
  WeightsNotFoundError,
} from './errors.js'
export type { ProcessLayout } from './launch/command.js'
export type { LogLine, Run } from './launch/run.js'
export { type BundleReport, closeBridge, inspectBundle } from './python/bridge/index.js'
export { type DoctorReport, doctor } from './python/doctor.js'
export { type SetupOptions, type SetupResult, setupRuntime } from './python/setup.js'
export { type ConvertOptions, type ConvertResult, convert } from './runs/convert.js'
export { demoBundle, tinyBundle } from './runs/demo.js'
export { type ExportOptions, type ExportResult, exportBundle } from './runs/export.js'
export { type ConfigOverrides, type GenerateOptions, generate } from './runs/generate.js'
export type { RunOptions } from './runs/launch.js'
export { type PrepareOptions, type PrepareResult, prepare } from './runs/prepare.js'
export { listPresets } from './runs/presets.js'
export type { GenerateResult, VideoResult } from './runs/results.js'
export type { SlurmOptions } from './runs/slurm.js'
export { checkpoints, type StageResult, type TrainOptions, type TrainResult, train } from './runs/train.js'
export * from './video/index.js'
