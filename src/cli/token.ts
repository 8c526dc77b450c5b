/**
 * `agent-trust token inspect|verify`. Inspect decodes without trusting (and says so on
 * every output); verify runs the verifier's checks against a JWKS, without consuming the
 * token. Neither ever prints the token or its signature.
 */
import { readFile } from 'node:fs/promises'
import type { ReplayRevocationStore } from '../revocation/store.js'
import { MemoryReplayRevocationStore } from '../revocation/memory.js'
import { loadManifestFile } from '../config/manifest.js'
import { ConfigInvalid } from '../errors.js'
import type { JSONWebKeySet } from '../keys/index.js'
import { OPERATIONS, type Operation } from '../policy/trust.js'
import { VerificationCore, type Requirement } from '../verifier/index.js'
import {
  argOrStdin,
  escapeText,
  EXIT,
  Failed,
  manifestPath,
  str,
  UsageError,
  type CommandGroup,
  type Context,
  type ExitCode,
} from './run.js'
import { MAX_TOKEN_BYTES } from '../policy/limits.js'
import { parseStrictJson, StrictJsonError } from '../lib/strict-json.js'

const UNVERIFIED = 'UNVERIFIED: decoded only, the signature was NOT checked. Do not trust these claims; use `agent-trust token verify`.'

function decodePart(part: string, what: string): Record<string, unknown> {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) throw new Failed(`the ${what} is not base64url`, EXIT.invalid, 'ERR_TOKEN_MALFORMED')
  let v: unknown
  try {
    // The verifier's reading: strict UTF-8, no member named twice (inspect shows what verify would read).
    v = parseStrictJson(Buffer.from(part, 'base64url'))
  } catch (e) {
    const rule = e instanceof StrictJsonError ? e.rule : 'syntax'
    const why = rule === 'utf8' ? 'is not valid UTF-8' : rule === 'duplicate' ? 'names a JSON member twice' : 'is not JSON'
    throw new Failed(`the ${what} ${why}`, EXIT.invalid, 'ERR_TOKEN_MALFORMED')
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new Failed(`the ${what} is not a JSON object`, EXIT.invalid, 'ERR_TOKEN_MALFORMED')
  return v as Record<string, unknown>
}

function when(epoch: unknown, nowS: number): string {
  if (typeof epoch !== 'number' || !Number.isFinite(epoch)) return String(epoch)
  const d = epoch - nowS
  let iso: string
  try {
    iso = new Date(epoch * 1000).toISOString()
  } catch {
    return String(epoch)
  }
  return `${iso} (${d >= 0 ? `in ${d}s` : `${-d}s ago`})`
}

async function inspect(ctx: Context): Promise<ExitCode> {
  const token = await argOrStdin(ctx, ctx.positionals[0] as string)
  if (token.length > MAX_TOKEN_BYTES) throw new Failed('the token exceeds 8 KiB', EXIT.invalid, 'ERR_TOKEN_MALFORMED')
  const parts = token.split('.')
  if (parts.length !== 3) throw new Failed('not a compact JWS (three dot-separated parts)', EXIT.invalid, 'ERR_TOKEN_MALFORMED')
  const header = decodePart(parts[0] as string, 'header')
  const payload = decodePart(parts[1] as string, 'payload')
  const signatureBytes = Buffer.from(parts[2] as string, 'base64url').length
  const nowS = Math.floor(Date.now() / 1000)
  const expired = typeof payload.exp === 'number' ? payload.exp <= nowS : undefined
  const human = [
    UNVERIFIED,
    `header:    ${JSON.stringify(header)}`,
    `claims:    ${JSON.stringify(payload, null, 2).replace(/\n/g, '\n           ')}`,
    `issued:    ${when(payload.iat, nowS)}`,
    `expires:   ${when(payload.exp, nowS)}${expired === true ? '  EXPIRED' : ''}`,
    `signature: ${signatureBytes} bytes (not shown)`,
  ].join('\n')
  ctx.print({ verified: false, warning: UNVERIFIED, header, payload, signatureBytes, ...(expired === undefined ? {} : { expired }) }, human)
  return EXIT.ok
}

const JWKS_TIMEOUT_MS = 5000

const NETWORK_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'the host name does not resolve (DNS)',
  EAI_AGAIN: 'DNS lookup failed (temporary)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_SOCKET: 'the connection closed',
}

/** Why a fetch failed, as an errno-like code and a phrase (never the URL: it may carry credentials). */
export function fetchFailure(cause: unknown): { reason: string; text: string } {
  const e = cause as (Error & { cause?: unknown }) | undefined
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError')
    return { reason: 'ETIMEDOUT', text: `no answer within ${JWKS_TIMEOUT_MS / 1000} s (ETIMEDOUT)` }
  const inner = (e?.cause ?? e) as (NodeJS.ErrnoException & { errors?: readonly unknown[] }) | undefined
  const code =
    typeof inner?.code === 'string'
      ? inner.code
      : (inner?.errors?.map((x) => (x as NodeJS.ErrnoException).code).find((c): c is string => typeof c === 'string') ?? undefined)
  if (code !== undefined)
    return { reason: code, text: `${NETWORK_ERRORS[code] ?? 'network or TLS error'} (${escapeText(code, { max: 40 })})` }
  // Such messages may quote the URL, credentials included: replaced before printing.
  const message = (inner?.message ?? e?.message ?? 'unknown error').replace(/[a-z][a-z0-9+.-]*:\/\/\S*/gi, '<url>')
  return { reason: 'EFETCH', text: escapeText(message, { max: 160 }) }
}

async function loadJwks(source: string): Promise<JSONWebKeySet> {
  let text: string
  if (/^https?:\/\//i.test(source)) {
    let res: Response
    try {
      res = await fetch(source, {
        signal: AbortSignal.timeout(JWKS_TIMEOUT_MS),
        headers: { accept: 'application/json' },
        redirect: 'error',
      })
    } catch (cause) {
      const f = fetchFailure(cause)
      throw new Failed(`the JWKS URL did not answer: ${f.text}`, EXIT.unavailable, 'ERR_AUTHORITY_UNAVAILABLE', { reason: f.reason })
    }
    if (!res.ok) throw new Failed(`the JWKS URL answered HTTP ${res.status}`, EXIT.unavailable, 'ERR_AUTHORITY_UNAVAILABLE')
    text = await res.text()
  } else {
    text = await readFile(source, 'utf8')
  }
  let jwks: unknown
  try {
    jwks = JSON.parse(text)
  } catch {
    throw new ConfigInvalid('the JWKS is not JSON')
  }
  if (typeof jwks !== 'object' || jwks === null || !Array.isArray((jwks as JSONWebKeySet).keys))
    throw new ConfigInvalid('the JWKS has no "keys" array')
  return jwks as JSONWebKeySet
}

async function verify(ctx: Context): Promise<ExitCode> {
  const token = await argOrStdin(ctx, ctx.positionals[0] as string)
  const jwksSource = str(ctx.values, 'jwks')
  const audience = str(ctx.values, 'audience')
  if (jwksSource === undefined || audience === undefined) throw new UsageError('--jwks <file|url> and --audience <id> are required')
  const scope = str(ctx.values, 'scope')
  const operation = str(ctx.values, 'operation')
  if ((scope === undefined) !== (operation === undefined)) throw new UsageError('--scope and --operation go together')
  if (operation !== undefined && !OPERATIONS.includes(operation as Operation)) throw new UsageError('--operation is read, write or execute')
  let issuer = str(ctx.values, 'issuer')
  let tolerance = 5
  if (issuer === undefined || str(ctx.values, 'manifest') !== undefined) {
    try {
      const m = loadManifestFile(manifestPath(ctx))
      issuer ??= m.authority.id
      tolerance = m.authority.clockToleranceSeconds
    } catch (e) {
      if (issuer === undefined)
        throw new UsageError(`pass --issuer <id>, or a readable --manifest (${(e as Error).message.split('\n')[0]})`)
    }
  }
  const jwks = await loadJwks(jwksSource)
  let store: ReplayRevocationStore = new MemoryReplayRevocationStore()
  if (ctx.values.revocation === true) {
    const { createRedisStore } = await import('../revocation/redis-entry.js')
    const prefix = str(ctx.values, 'prefix') ?? ctx.io.env.AGENT_TRUST_REDIS_PREFIX
    store = createRedisStore({
      url: ctx.io.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      commandTimeoutMs: 2000,
      ...(prefix === undefined ? {} : { prefix }),
    })
  }
  try {
    const core = new VerificationCore({ issuers: [{ issuer: issuer as string, jwks }], store, clockToleranceSeconds: tolerance })
    const requirement: Requirement | undefined = scope === undefined ? undefined : { scope, operation: operation as Operation }
    // Never consume: checking a token from the command line must not burn it.
    const cap = await core.verify(token, { audience, consume: false, ...(requirement === undefined ? {} : { requirement }) })
    const c = cap.claims
    const checked = [
      'signature',
      'header',
      'claims',
      'issuer',
      'audience',
      'lifetime',
      ...(ctx.values.revocation === true ? ['revocation (REDIS_URL)'] : []),
      ...(requirement === undefined ? [] : ['trust level', 'scope']),
    ]
    const human = [
      `VALID: ${checked.join(', ')} checked; not consumed${ctx.values.revocation === true ? '' : '; revocation not checked (use --revocation)'}`,
      `  sub ${c.sub}  aud ${c.aud}  iss ${c.iss}  level ${cap.trustLevel}  presenter ${cap.presenter}`,
      `  scope ${c.scope.join(' ')}`,
      `  jti ${c.jti}  expires ${new Date(c.exp * 1000).toISOString()}  delegation_depth ${c.delegation_depth}${c.chain === undefined ? '' : `  chain ${c.chain.join(',')}`}`,
    ].join('\n')
    ctx.print({ valid: true, checked, claims: c, presenter: cap.presenter, trustLevel: cap.trustLevel, consumed: false }, human)
    return EXIT.ok
  } finally {
    await store.close()
  }
}

export const tokenCommands: CommandGroup = {
  name: 'token',
  summary: 'inspect (untrusted decode) or verify a capability token',
  subcommands: [
    {
      name: 'inspect',
      summary: 'decode a token WITHOUT verifying it (labelled UNVERIFIED)',
      args: 1,
      help: `Usage: agent-trust token inspect <token | ->

Decodes the header and claims of a capability token without checking anything, and says
so: the output is labelled UNVERIFIED. The signature is never printed (only its length).
Pass "-" to read the token from stdin, which keeps it out of your shell history and of
the process list. Exit 0 when it decodes, 4 when it is not a compact JWS.`,
      run: inspect,
    },
    {
      name: 'verify',
      summary: 'verify a token against a JWKS (file or URL), without consuming it',
      args: 1,
      options: {
        jwks: { type: 'string' },
        audience: { type: 'string' },
        issuer: { type: 'string' },
        scope: { type: 'string' },
        operation: { type: 'string' },
        revocation: { type: 'boolean' },
        prefix: { type: 'string' },
      },
      help: `Usage: agent-trust token verify <token | -> --jwks <file|url> --audience <id> [options]

Runs the verifier's checks: shape and header, ES256 signature against
the JWKS, claims, issuer, audience, lifetime and clock. The jti is NOT consumed, so the
token stays usable. Exit 0 when valid, 1 with the denial code when not, 3 when the JWKS
URL or Redis does not answer.

Options:
  --jwks <file|url>     the authority's public keys (a JSON file, or http(s) URL)
  --audience <id>       the verifier id the token must be addressed to
  --issuer <id>         the trusted issuer (default: the manifest's authority.id)
  --scope <scope>       also check that the token carries this exact scope...
  --operation <op>      ...for this operation (read, write, execute) and its trust level
  --revocation          also check revocation in the shared store at REDIS_URL
  --prefix <p>          that store's key prefix (default: AGENT_TRUST_REDIS_PREFIX, else agent-trust)`,
      run: verify,
    },
  ],
}
