import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: { conditions: ['agent-trust-source'] },
  ssr: { resolve: { conditions: ['agent-trust-source'] } },
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup/reflect-metadata.ts', 'test/setup/fail-on-console.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests that start servers and child processes share 2 cores; keep parallelism modest.
    maxWorkers: 2,
  },
})
