// The public API of ttt-video, and nothing else.
export * from './config/index.js'
export {
  CancelledError,
  ConfigError,
  DistributedError,
  type InputIssue,
  OutOfMemoryError,
  PythonRuntimeError,
  RunFailedError,
  type RunFailure,
  StoryboardError,
  TttVideoError,
  WeightsNotFoundError,
} from './errors.js'
export {
  cacheDir,
  DEMO_SEED,
  demoBundle,
  type GenerateOptions,
  generate,
  listPresets,
  type PreparedRun,
  prepareRun,
  presetFile,
} from './generate.js'
export type { ProcessLayout } from './launch/command.js'
export {
  ERROR_CODES,
  type ErrorCode,
  EVENT_SCHEMA_VERSION,
  RunEvent,
  type RunEventType,
} from './launch/events.js'
export type { LogLine, Run, RunResult, VideoResult } from './launch/run.js'
export * from './runtime/index.js'
export * from './server/index.js'
export {
  checkSegmentCounts,
  END_SCENE,
  parseStoryboards,
  readStoryboardFile,
  type Segment,
  type SegmentPrompts,
  START_SCENE,
  segmentPrompts,
  storyboardFormat,
  type Video,
  validateStoryboards,
} from './storyboard/index.js'
export * from './video/index.js'
