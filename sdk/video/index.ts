// Video tools: find ffmpeg, probe, previews, subtitles, concatenation.
export { type ConcatResult, concat, concatListLine } from './concat.js'
export { FfmpegError, FfmpegNotFoundError, VideoCancelledError, VideoInputError } from './errors.js'
export {
  type BinarySource,
  type FfmpegBinaries,
  type FfmpegOptions,
  findFfmpeg,
  type VideoOptions,
} from './ffmpeg.js'
export {
  type ContactSheet,
  type ContactSheetOptions,
  contactSheet,
  evenlySpacedFrames,
  type PosterOptions,
  type PreviewOptions,
  poster,
  preview,
} from './previews.js'
export { type DeclaredFacts, probe, probeWarnings, type StreamInfo, type VideoInfo } from './probe.js'
export {
  formatSubtitles,
  readRunFolder,
  type SegmentsSource,
  type SubtitleCue,
  type SubtitleFormat,
  type SubtitlesOptions,
  type SubtitlesResult,
  stripSceneTokens,
  subtitleCues,
  subtitles,
} from './subtitles.js'
