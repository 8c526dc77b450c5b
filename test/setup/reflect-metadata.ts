/**
 * Tests import `@peculiar/x509` themselves (to inspect certificates), like an app would: with
 * x509 2.x the app loads the `reflect-metadata` polyfill first (a dev dependency; 1.x needs
 * none). The library's own loader (src/identity/reflect-metadata.ts) is exercised by
 * scripts/peers-latest.sh, where nothing else loads the polyfill.
 */
import { createRequire } from 'node:module'

try {
  createRequire(import.meta.url)('reflect-metadata')
} catch {
  // not installed
}
