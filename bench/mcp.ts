/**
 * MCP `tools/call` guarded against unguarded and against the physical floor, on both MCP
 * SDKs (1.x `@modelcontextprotocol/sdk`, 2.x `@modelcontextprotocol/server`/`client`/`node`)
 * and both transports: Streamable HTTP on loopback (client and server in this process, the
 * host `serveStreamableHttp`) and stdio (server in a child process). The same `echo` call,
 * the same concurrency and payload for every variant:
 *
 * - unguarded;
 * - bare floor: one node:crypto ES256 sign (client) and verify (server, in the tool, where the
 *   guard sits) per call of a token with agent-trust's header and claims, no other check;
 * - agent-trust inline and on the crypto thread (`cryptoOffload`, both sides);
 * - jose: a per-call jose ES256 JWT, verified by the SDK's `requireBearerAuth` on HTTP (1.x:
 *   the Express middleware; 2.x: the framework-free `requireBearerAuth` of
 *   `@modelcontextprotocol/server`) and by `jwtVerify` in the tool on stdio.
 *
 * How it measures: bench/mcp-measure.ts.
 */
import { generateKeyPairSync, randomUUID, sign as cryptoSign } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Client as ClientV2, StreamableHTTPClientTransport as HttpClientV2 } from '@modelcontextprotocol/client'
import { getDefaultEnvironment as envV2, StdioClientTransport as StdioClientV2 } from '@modelcontextprotocol/client/stdio'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js'
import { requireBearerAuth as requireBearerAuthV2 } from '@modelcontextprotocol/server'
import { exportJWK, generateKeyPair, jwtVerify, SignJWT, type JWK } from 'jose'
import { Authority, createVerifier, MemoryReplayRevocationStore, type Verifier } from 'agent-trust'
import { guardMcpServer, serveStreamableHttp, withCapabilities, type HttpMiddleware } from 'agent-trust/mcp'
import { bareCheck } from '../test/support/bench-guards.js'
import { buildCheckedEchoServer, buildMcpServer, CONTEXT, MANIFEST, META_KEY, SERVER_ID } from '../test/support/mcp-world.js'
import { buildCheckedEchoServerV2, buildMcpServerV2 } from '../test/support/mcp-world-v2.js'
import type { Row } from './lib.js'
import { transportRows, type Ops } from './mcp-measure.js'

const AGENT = 'agent-summarizer-v2'
const ECHO_SCOPE = `tool:${SERVER_ID}:echo`

/** What the bench needs of a client, on either SDK. */
interface BenchClient {
  connect(transport: never): Promise<void>
  callTool(params: { name: string; arguments: Record<string, unknown>; _meta?: Record<string, unknown> }): Promise<unknown>
  close(): Promise<void>
}
type Check = (token: string) => Promise<void>
type AnyServer = Parameters<typeof guardMcpServer>[0]

/** One SDK's pieces: client, transports, the checked echo server, the SDK's bearer middleware. */
interface Sdk {
  readonly name: string
  client(): BenchClient
  http(url: URL, fetch: typeof globalThis.fetch): unknown
  fixture: string
  env(): Record<string, string>
  stdio(params: { command: string; args: string[]; env: Record<string, string>; stderr: 'ignore' }): unknown
  server(): AnyServer
  checked(check: Check): AnyServer
  bearer(verifyAccessToken: (token: string) => Promise<AuthInfo>): HttpMiddleware
}
interface AuthInfo {
  token: string
  clientId: string
  scopes: string[]
  expiresAt: number
}

const fixture = (file: string) => fileURLToPath(new URL(`../test/support/${file}`, import.meta.url))

const V1: Sdk = {
  name: 'SDK 1.x',
  client: () => new Client({ name: 'bench', version: '1.0.0' }) as unknown as BenchClient,
  http: (url, fetch) => new StreamableHTTPClientTransport(url, { fetch }),
  fixture: fixture('mcp-stdio-server.ts'),
  env: getDefaultEnvironment,
  stdio: (params) => new StdioClientTransport(params),
  server: () => buildMcpServer(),
  checked: buildCheckedEchoServer,
  bearer: (verifyAccessToken) =>
    requireBearerAuth({ requiredScopes: [ECHO_SCOPE], verifier: { verifyAccessToken } }) as unknown as HttpMiddleware,
}

const V2: Sdk = {
  name: 'SDK 2.x',
  client: () => new ClientV2({ name: 'bench', version: '1.0.0' }) as unknown as BenchClient,
  http: (url, fetch) => new HttpClientV2(url, { fetch }),
  fixture: fixture('mcp-stdio-server-v2.ts'),
  env: envV2,
  stdio: (params) => new StdioClientV2(params),
  server: () => buildMcpServerV2(),
  checked: buildCheckedEchoServerV2,
  bearer: (verifyAccessToken) => {
    // The framework-free gate reads only the request's `authorization` header.
    const gate = requireBearerAuthV2({ requiredScopes: [ECHO_SCOPE], verifier: { verifyAccessToken } })
    return (async (req, res, next) => {
      const answer = await gate({ headers: { get: (n: string) => req.headers[n] ?? null } } as unknown as Request)
      if (answer instanceof Response) res.writeHead(answer.status, Object.fromEntries(answer.headers)).end(await answer.text())
      else {
        ;(req as { auth?: unknown }).auth = answer
        next()
      }
    }) as HttpMiddleware
  },
}

/** The keys and mints every variant of both SDKs shares. */
interface Keys {
  readonly authority: Authority
  readonly offloadAuthority: Authority
  readonly verifier: Verifier
  readonly offloadVerifier: Verifier
  readonly bareToken: () => string
  readonly barePublicJwk: JWK
  readonly joseMint: () => Promise<string>
  readonly josePublicJwk: JWK
  readonly joseVerify: (token: string) => Promise<AuthInfo>
}

async function makeKeys(): Promise<Keys> {
  const store = new MemoryReplayRevocationStore()
  const authority = await Authority.create({ manifest: MANIFEST, store })
  // The same keys, ECDSA on the dedicated crypto thread.
  const offloadAuthority = await Authority.create({ manifest: MANIFEST, store, keys: authority.keys, cryptoOffload: true })
  const verifierOptions = { id: SERVER_ID, issuers: [authority.trustedIssuer()], store, manifest: MANIFEST, mode: 'enforce' as const }
  const verifier = createVerifier(verifierOptions)
  const offloadVerifier = createVerifier({ ...verifierOptions, cryptoOffload: true })

  // The floor signs what agent-trust signs (the same header and claims, so the same size) and
  // checks nothing but the signature.
  const bare = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const bareKid = randomUUID()
  const header = Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'agent-cap+jwt', kid: bareKid })).toString('base64url')
  const bareToken = (): string => {
    const now = Math.floor(Date.now() / 1000)
    const claims = {
      iss: authority.id,
      sub: AGENT,
      aud: SERVER_ID,
      iat: now,
      nbf: now,
      exp: now + 60,
      jti: randomUUID(),
      scope: [ECHO_SCOPE],
      delegation_depth: 0,
      trust_level: 'L2',
      context: CONTEXT,
    }
    const input = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
    const sig = cryptoSign('sha256', Buffer.from(input), { key: bare.privateKey, dsaEncoding: 'ieee-p1363' })
    return `${input}.${sig.toString('base64url')}`
  }

  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
  const kid = randomUUID()
  const joseMint = () =>
    new SignJWT({ scope: ECHO_SCOPE })
      .setProtectedHeader({ alg: 'ES256', kid })
      .setIssuer(authority.id)
      .setSubject(AGENT)
      .setAudience(SERVER_ID)
      .setIssuedAt()
      .setExpirationTime('60s')
      .setJti(randomUUID())
      .sign(privateKey)
  const joseVerify = async (token: string): Promise<AuthInfo> => {
    const { payload } = await jwtVerify(token, publicKey, { issuer: authority.id, audience: SERVER_ID, algorithms: ['ES256'] })
    return { token, clientId: String(payload.sub), scopes: String(payload.scope).split(' '), expiresAt: payload.exp as number }
  }
  return {
    authority,
    offloadAuthority,
    verifier,
    offloadVerifier,
    bareToken,
    barePublicJwk: bare.publicKey.export({ format: 'jwk' }) as JWK,
    joseMint,
    josePublicJwk: { ...(await exportJWK(publicKey)), kid },
    joseVerify,
  }
}

const echo = (client: BenchClient, meta?: Record<string, unknown>) =>
  client.callTool({ name: 'echo', arguments: { message: 'hi' }, ...(meta === undefined ? {} : { _meta: meta }) })
const guardedClient = (sdk: Sdk, issuer: Authority) =>
  withCapabilities(sdk.client() as unknown as Client, {
    issuer,
    agentId: AGENT,
    serverId: SERVER_ID,
    context: CONTEXT,
  }) as unknown as BenchClient

// Node 20's fetch leaves one abort listener per request on the SDK transport's long-lived
// signal until GC, and past 1500 warns on every request: the same for every variant, but it
// swamps what is measured. The bench's clients never cancel, so they send no signal.
const noSignal: typeof fetch = (input, init) => fetch(input, { ...init, signal: undefined })

/** The five variants of one SDK over Streamable HTTP. */
async function httpOps(sdk: Sdk, keys: Keys, closers: Array<() => Promise<unknown>>): Promise<Ops> {
  const serve = async (server: () => AnyServer, middleware?: HttpMiddleware) => {
    const http = await serveStreamableHttp(server, middleware === undefined ? {} : { middleware })
    closers.push(() => http.close())
    return http.url
  }
  const connect = async (client: BenchClient, url: URL, fetch = noSignal) => {
    await client.connect(sdk.http(url, fetch) as never)
    closers.push(() => client.close())
    return client
  }
  const joseFetch: typeof fetch = async (input, init) => {
    const headers = new Headers(init?.headers)
    headers.set('authorization', `Bearer ${await keys.joseMint()}`)
    return fetch(input, { ...init, headers, signal: undefined })
  }
  const bareVerify = bareCheck(keys.barePublicJwk)
  const [plain, bare, inline, offload, jose] = await Promise.all([
    connect(sdk.client(), await serve(() => sdk.server())),
    connect(sdk.client(), await serve(() => sdk.checked(bareVerify))),
    connect(
      guardedClient(sdk, keys.authority),
      await serve(() => guardMcpServer(sdk.server(), { verifier: keys.verifier, manifest: MANIFEST })),
    ),
    connect(
      guardedClient(sdk, keys.offloadAuthority),
      await serve(() => guardMcpServer(sdk.server(), { verifier: keys.offloadVerifier, manifest: MANIFEST })),
    ),
    connect(sdk.client(), await serve(() => sdk.server(), sdk.bearer(keys.joseVerify)), joseFetch),
  ])
  return {
    unguarded: () => echo(plain),
    bare: () => echo(bare, { [META_KEY]: keys.bareToken() }),
    inline: () => echo(inline),
    cryptoOffload: () => echo(offload),
    jose: () => echo(jose),
  }
}

/** The five variants of one SDK over stdio (one child process each). */
async function stdioOps(sdk: Sdk, keys: Keys, closers: Array<() => Promise<unknown>>): Promise<Ops> {
  const child = async (client: BenchClient, config: Record<string, unknown>) => {
    const env = {
      ...sdk.env(),
      AGENT_TRUST_MCP_FIXTURE: JSON.stringify({ serverId: SERVER_ID, issuer: keys.authority.id, ...config }),
    }
    await client.connect(
      sdk.stdio({
        command: process.execPath,
        args: ['--import', 'tsx', '--conditions=agent-trust-source', sdk.fixture],
        env,
        stderr: 'ignore',
      }) as never,
    )
    closers.push(() => client.close())
    return client
  }
  const guardConfig = { guard: 'agent-trust', jwks: keys.authority.jwks(), manifest: MANIFEST }
  const [plain, bare, inline, offload, jose] = await Promise.all([
    child(sdk.client(), { guard: 'none' }),
    child(sdk.client(), { guard: 'bare', barePublicJwk: keys.barePublicJwk }),
    child(guardedClient(sdk, keys.authority), guardConfig),
    child(guardedClient(sdk, keys.offloadAuthority), { ...guardConfig, cryptoOffload: true }),
    child(sdk.client(), { guard: 'jose', josePublicJwk: keys.josePublicJwk }),
  ])
  return {
    unguarded: () => echo(plain),
    bare: () => echo(bare, { [META_KEY]: keys.bareToken() }),
    inline: () => echo(inline),
    cryptoOffload: () => echo(offload),
    jose: async () => echo(jose, { [META_KEY]: await keys.joseMint() }),
  }
}

export async function benchMcp(): Promise<Row[]> {
  const keys = await makeKeys()
  const rows: Row[] = []
  for (const sdk of [V1, V2]) {
    const closers: Array<() => Promise<unknown>> = []
    try {
      rows.push(...(await transportRows(`${sdk.name} HTTP`, await httpOps(sdk, keys, closers), 'jose + requireBearerAuth')))
      rows.push(...(await transportRows(`${sdk.name} stdio`, await stdioOps(sdk, keys, closers), 'jose + jwtVerify in tool')))
    } finally {
      for (const close of closers.reverse()) await close().catch(() => undefined)
    }
  }
  return rows
}
