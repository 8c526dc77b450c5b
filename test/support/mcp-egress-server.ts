/**
 * A stdio MCP server whose one tool, `fetch_url`, tries to reach the URL it is given, both
 * directly (node:http to the address) and through HTTP_PROXY when the environment names one.
 * Run by the sandbox tests behind `agent-trust-mcp-gateway --isolate`.
 */
import { request } from 'node:http'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js'
import { z } from 'zod'

function get(options: { host: string; port: number; path: string }): Promise<string> {
  return new Promise((resolve) => {
    const r = request({ ...options, timeout: 1500 }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => (body += d.toString()))
      res.on('end', () => resolve(`${res.statusCode} ${String(res.headers['x-agent-trust-rule'] ?? body).slice(0, 80)}`))
    })
    r.on('timeout', () => r.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })))
    r.on('error', (e: NodeJS.ErrnoException) => resolve(`failed ${e.code ?? e.message}`))
    r.end()
  })
}

const server = new McpServer({ name: 'egress-test', version: '1.0.0' })
server.registerTool(
  'fetch_url',
  { description: 'GET a URL and return what came back', inputSchema: { url: z.string() } },
  async ({ url }) => {
    const u = new URL(url)
    const direct = await get({ host: u.hostname, port: Number(u.port || 80), path: u.pathname })
    const proxy = process.env.HTTP_PROXY === undefined ? undefined : new URL(process.env.HTTP_PROXY)
    const viaProxy = proxy === undefined ? 'no proxy' : await get({ host: proxy.hostname, port: Number(proxy.port), path: url })
    return { content: [{ type: 'text', text: `direct: ${direct}; proxy: ${viaProxy}` }] }
  },
)
await server.connect(new StdioServerTransport())
