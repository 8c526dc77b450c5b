/**
 * `agent-trust/langchain/http` as the package publishes it: loads the implementation (`./http-tool.js`, whose
 * declarations are the subpath's types) with a dynamic import, so that without
 * `@langchain/core` or `undici` or `ipaddr.js` it fails with one `ERR_DEPENDENCY_MISSING` line naming the package to install.
 * The names below are exactly the implementation's exports (a test keeps them equal).
 */
import { loadWithPeers } from '#internal'

const m = await loadWithPeers('agent-trust/langchain/http', ['@langchain/core', 'undici', 'ipaddr.js'], () => import('./http-tool.js'))

export const { createLangChainHttpTool } = m
