/**
 * `@peculiar/x509` 2.x resolves its parsers through tsyringe, which throws on import unless
 * the `Reflect.getMetadata` polyfill is loaded first; 1.x needs none. Loaded before the
 * library (imported first by `internal.ts`): when no polyfill is present and the optional
 * peer `reflect-metadata` is installed, it is loaded here. Synchronous on purpose: an ES
 * module with top-level await would not delay its sibling CommonJS import.
 */
import { createRequire } from 'node:module'

if (typeof (Reflect as { getMetadata?: unknown }).getMetadata !== 'function') {
  try {
    createRequire(import.meta.url)('reflect-metadata')
  } catch {
    // Not installed: fine with @peculiar/x509 1.x; 2.x then throws its own "add reflect-metadata" error.
  }
}
