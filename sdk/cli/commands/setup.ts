import { setupRuntime } from '../../python/setup.js'
import { type Command, err, out } from '../flags.js'

export const setupCommand: Command = {
  name: 'setup',
  usage:
    'ttt-video setup [--venv DIR] [--python BIN] [--cuda] [--triton] [--torch-version V] [--force] [--quiet]',
  flags: {
    venv: { type: 'string' },
    python: { type: 'string' },
    cuda: { type: 'boolean' },
    triton: { type: 'boolean' },
    'torch-version': { type: 'string' },
    force: { type: 'boolean' },
    quiet: { type: 'boolean' },
  },
  async run(_positionals, values) {
    const quiet = values.quiet === true
    const result = await setupRuntime({
      ...(values.venv ? { venvDir: values.venv as string } : {}),
      ...(values.python ? { python: values.python as string } : {}),
      ...(values['torch-version'] ? { torchVersion: values['torch-version'] as string } : {}),
      cuda: values.cuda === true,
      extras: values.triton === true ? ['triton'] : [],
      force: values.force === true,
      onLog: (line) => {
        if (!quiet) err(line)
      },
    })
    if (!quiet)
      out(
        `${result.venvDir} ready (torch ${result.torch}, ${result.changed ? 'installed' : 'unchanged'}, ${result.seconds} s)`,
      )
    return 0
  },
}
