// The public API of ttt-video, and nothing else.
export * from './config/index.js'
export { ConfigError, type InputIssue, PythonRuntimeError, StoryboardError, TttVideoError } from './errors.js'
export * from './runtime/index.js'
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
