export {
  FRAMES_PER_SEGMENT,
  MODEL_PRESETS,
  PIXELS_PER_TOKEN,
  pixelFrames,
  VIDEO_LENGTH_FRAMES,
} from './facts.js'
export { configToToml, parseConfigText, type ResolveOptions, readConfigFile, resolveConfig } from './load.js'
export { type ConfigObject, mergeConfigObjects, parseSetArgs } from './overrides.js'
export * from './schema.js'
export {
  checkRules,
  meshSize,
  type RuleOptions,
  schemaIssues,
  segmentCount,
  tokensPerFrame,
  validateConfig,
} from './validate.js'
