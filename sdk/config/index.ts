export {
  configToToml,
  parseConfigText,
  type ResolveOptions,
  readConfigFile,
  resolveConfig,
  validateConfig,
} from './load.js'
export { type ConfigObject, mergeConfigObjects, parseSetArgs } from './overrides.js'
export {
  FRAMES_PER_SEGMENT,
  MODEL_PRESETS,
  meshSize,
  pixelFrames,
  segmentCount,
  tokensPerFrame,
  VIDEO_LENGTH_FRAMES,
} from './presets.js'
export { checkRules, type RuleOptions } from './rules.js'
export * from './schema.js'
