// Module resolution as in an application that installed only MCP SDK 2.x: any
// `@modelcontextprotocol/sdk` specifier fails to resolve, as it would without the package.
import { register } from 'node:module'

register(
  'data:text/javascript,' +
    encodeURIComponent(`export async function resolve(specifier, context, next) {
  if (specifier === '@modelcontextprotocol/sdk' || specifier.startsWith('@modelcontextprotocol/sdk/')) {
    const e = new Error('Cannot find package ' + specifier); e.code = 'ERR_MODULE_NOT_FOUND'; throw e
  }
  return next(specifier, context)
}`),
)
