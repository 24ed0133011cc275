import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Integration tests start Python processes (and torchrun): one file at a time on small machines.
    fileParallelism: false,
  },
})
