/**
 * `agent-trust keys generate|rotate|jwks|revoke`: the authority's signing keys, in the key
 * file (default) or the Redis key store (`--redis`, REDIS_URL). Private keys are never
 * printed; `jwks` prints the public set verifiers trust.
 */
import { existsSync } from 'node:fs'
import { KeySet, generateSigningKey, type JSONWebKeySet } from '../keys/index.js'
import { createKeyManager } from '../keys/rotation.js'
import { FileKeyStore, type KeyStore } from '../keys/store.js'
import { loadManifestFile } from '../config/manifest.js'
import {
  escapeText,
  EXIT,
  Failed,
  manifestPath,
  quote,
  str,
  type CommandGroup,
  type Context,
  type ExitCode,
  type OptionSpec,
} from './run.js'
import { operator, OPERATOR_HELP, OPERATOR_OPTIONS, withAudit } from './shared.js'
import { allowedEvent, refusedEvent } from '../audit/events.js'

const STORE_OPTIONS: OptionSpec = {
  'key-file': { type: 'string' },
  redis: { type: 'boolean' },
  prefix: { type: 'string' },
}

const STORE_HELP = `  --key-file <file>     the key file (default: AGENT_TRUST_KEY_FILE, else .agent-trust/keys.json);
                        mode 0600, holds PRIVATE keys
  --redis               use the Redis key store at REDIS_URL instead (authority replicas)
  --prefix <p>          the Redis key store's prefix (default agent-trust-keys)`

async function openKeyStore(ctx: Context): Promise<KeyStore> {
  if (ctx.values.redis === true) {
    const { RedisKeyStore } = await import('../keys/redis-entry.js')
    const prefix = str(ctx.values, 'prefix')
    return new RedisKeyStore({ url: ctx.io.env.REDIS_URL ?? 'redis://127.0.0.1:6379', ...(prefix === undefined ? {} : { prefix }) })
  }
  return new FileKeyStore(str(ctx.values, 'key-file') ?? ctx.io.env.AGENT_TRUST_KEY_FILE ?? '.agent-trust/keys.json')
}

async function withStore<T>(ctx: Context, fn: (store: KeyStore) => Promise<T>): Promise<T> {
  const store = await openKeyStore(ctx)
  try {
    return await fn(store)
  } finally {
    await store.close?.()
  }
}

/**
 * The rotation interval from the manifest (`authority.keyRotationHours`). Without a manifest
 * at the default path the key manager's default applies; a manifest that was named
 * (`--manifest`, AGENT_TRUST_MANIFEST) or exists but is missing, unreadable or invalid fails
 * the command (exit 4) rather than rotating on a silently different schedule.
 */
function rotationIntervalMs(ctx: Context): number | undefined {
  const path = manifestPath(ctx)
  const named = str(ctx.values, 'manifest') !== undefined || ctx.io.env.AGENT_TRUST_MANIFEST !== undefined
  if (!named && !existsSync(path)) return undefined
  return Math.round(loadManifestFile(path).authority.keyRotationHours * 3600 * 1000)
}

async function publicSet(store: KeyStore): Promise<JSONWebKeySet> {
  const records = await store.load()
  if (records.length === 0)
    throw new Failed('the key store is empty: run `agent-trust keys generate` first', EXIT.invalid, 'ERR_KEY_NOT_FOUND')
  return (await KeySet.create(records)).jwks()
}

async function generate(ctx: Context): Promise<ExitCode> {
  return withStore(ctx, (store) =>
    withAudit(ctx, async (audit) => {
      const existing = await store.load()
      if (existing.length > 0 && ctx.values.force !== true) {
        throw new Failed(
          'the key store already holds keys: use `keys rotate` (or --force to replace them all, which invalidates every outstanding token)',
          EXIT.failed,
          'ERR_KEY_STORE_NOT_EMPTY',
        )
      }
      const record = await generateSigningKey()
      await store.save([record])
      audit.record(
        allowedEvent('key', {
          origin: operator(ctx),
          note: `generated ${record.kid}${existing.length > 0 ? ` replacing ${existing.length} key(s)` : ''} (cli)`,
        }),
      )
      const jwks = await publicSet(store)
      ctx.print({ kid: record.kid, jwks }, `generated signing key ${record.kid}`)
      return EXIT.ok
    }),
  )
}

async function rotate(ctx: Context): Promise<ExitCode> {
  const interval = rotationIntervalMs(ctx)
  return withStore(ctx, (store) =>
    withAudit(ctx, async (audit) => {
      if ((await store.load()).length === 0)
        throw new Failed('the key store is empty: run `agent-trust keys generate` first', EXIT.invalid, 'ERR_KEY_NOT_FOUND')
      const manager = await createKeyManager({ store, ...(interval === undefined ? {} : { rotationIntervalMs: interval }) })
      const immediate = ctx.values.immediate === true
      const kid = await manager.rotateNow({ immediate })
      audit.record(allowedEvent('key', { origin: operator(ctx), note: `rotated to ${kid}${immediate ? ' (immediate)' : ''} (cli)` }))
      const jwks = manager.keys.jwks()
      ctx.print(
        { kid, immediate, jwks },
        `new signing key ${kid} published${immediate ? ' and signing now' : '; it starts signing after the pre-publication delay (verifiers fetch it first)'}`,
      )
      return EXIT.ok
    }),
  )
}

async function jwks(ctx: Context): Promise<ExitCode> {
  return withStore(ctx, async (store) => {
    const set = await publicSet(store)
    // Always JSON: this is what verifiers and the JWKS endpoint serve.
    ctx.io.out(`${JSON.stringify(set, null, 2)}\n`)
    return EXIT.ok
  })
}

async function revoke(ctx: Context): Promise<ExitCode> {
  const kid = ctx.positionals[0] as string
  return withStore(ctx, (store) =>
    withAudit(ctx, async (audit) => {
      if ((await store.load()).length === 0) throw new Failed('the key store is empty', EXIT.invalid, 'ERR_KEY_NOT_FOUND')
      const manager = await createKeyManager({ store })
      const removed = await manager.revoke(kid)
      const keyNote = `${removed ? 'revoked' : 'no such key'} ${escapeText(kid, { max: 64 })} (cli)`
      audit.record(
        removed
          ? allowedEvent('key', { origin: operator(ctx), note: keyNote })
          : refusedEvent('key', 'ERR_KEY_NOT_FOUND', { origin: operator(ctx), note: keyNote }),
      )
      if (!removed) throw new Failed(`no key ${quote(kid)} in the key store (see agent-trust keys jwks)`, EXIT.failed, 'ERR_KEY_NOT_FOUND')
      ctx.print(
        { revoked: kid, jwks: manager.keys.jwks() },
        `revoked key ${kid}: tokens it signed are rejected as soon as verifiers refresh their JWKS`,
      )
      return EXIT.ok
    }),
  )
}

export const keysCommands: CommandGroup = {
  name: 'keys',
  summary: "generate, rotate, publish and revoke the authority's signing keys",
  subcommands: [
    {
      name: 'generate',
      summary: 'create the first signing key',
      options: { ...STORE_OPTIONS, ...OPERATOR_OPTIONS, force: { type: 'boolean' } },
      help: `Usage: agent-trust keys generate [--key-file <file> | --redis] [--force]

Creates a new ES256 signing key in an empty key store and prints its kid. Refuses (exit 1)
when the store already holds keys, unless --force (which replaces them all: every token
they signed is then rejected).

Options:
  --force               replace existing keys
${STORE_HELP}
${OPERATOR_HELP}`,
      run: generate,
    },
    {
      name: 'rotate',
      summary: 'start a new signing key (the old one stays published for the overlap)',
      options: { ...STORE_OPTIONS, ...OPERATOR_OPTIONS, immediate: { type: 'boolean' } },
      help: `Usage: agent-trust keys rotate [--immediate] [--key-file <file> | --redis]

Adds a new key. It is published at once and starts signing after the pre-publication delay
(so verifiers that cache the JWKS know it first), or at once with --immediate. The old key
stays in the JWKS until every token it signed has expired. A running authority adopts the
change at its key manager's next sync.

Options:
  --immediate           sign with the new key at once
${STORE_HELP}
${OPERATOR_HELP}`,
      run: rotate,
    },
    {
      name: 'jwks',
      summary: 'print the public JWKS (always JSON)',
      options: STORE_OPTIONS,
      help: `Usage: agent-trust keys jwks [--key-file <file> | --redis]

Prints the public keys verifiers trust, as a JWKS (JSON; public members only).

Options:
${STORE_HELP}`,
      run: jwks,
    },
    {
      name: 'revoke',
      summary: 'drop a (compromised) key at once',
      args: 1,
      options: { ...STORE_OPTIONS, ...OPERATOR_OPTIONS },
      help: `Usage: agent-trust keys revoke <kid> [--key-file <file> | --redis]

Removes the key from the store immediately (active or retired); if it was the active key,
a new one is generated. Exit 1 if no such kid.

Options:
${STORE_HELP}
${OPERATOR_HELP}`,
      run: revoke,
    },
  ],
}
