import type { Command } from '../flags.js'
import { configCommand } from './config.js'
import { convertCommand } from './convert.js'
import { doctorCommand } from './doctor.js'
import { exportCommand } from './export.js'
import { generateCommand } from './generate.js'
import { prepareCommand } from './prepare.js'
import { previewCommand } from './preview.js'
import { probeCommand } from './probe.js'
import { serveCommand } from './serve.js'
import { setupCommand } from './setup.js'
import { storyboardCommand } from './storyboard.js'
import { subtitlesCommand } from './subtitles.js'
import { trainCommand } from './train.js'

/** Every command, in the order of `ttt-video --help`. */
export const COMMANDS: readonly Command[] = [
  setupCommand,
  doctorCommand,
  configCommand,
  storyboardCommand,
  generateCommand,
  prepareCommand,
  trainCommand,
  exportCommand,
  convertCommand,
  probeCommand,
  previewCommand,
  subtitlesCommand,
  serveCommand,
]
