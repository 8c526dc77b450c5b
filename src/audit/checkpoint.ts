/**
 * Signed checkpoints: a chain's head (chain id, seq, hash, event count, sealed or not)
 * signed with an ES256 key the log's storage does not hold, as a compact JWS (RFC 7515)
 * with its own `typ` (RFC 8725 section 3.11), so that it can never be read as a capability
 * token nor a token as a checkpoint.
 *
 * Whoever can write the trail's file can re-chain it from scratch, cut its tail and forge a
 * seal, or delete whole chains: the hashes alone (and an HMAC key kept beside the writer)
 * cannot show it. A checkpoint kept elsewhere (another host, a collector, a Redis the log
 * host cannot write) and verified with the public JWKS is an anchor nobody there can forge:
 * `audit verify` then reports a rewritten, cut, emptied or deleted chain against the latest
 * checkpoint of each chain.
 *
 * {@link withCheckpoints} writes one periodically (when the head moved) and one after the
 * seal at `close()`; {@link readCheckpoints} verifies them and returns the anchors.
 */
import type { KeyObject } from 'node:crypto'
import { z } from 'zod'
import { AuditTampered } from '../errors.js'
import { importPrivateKey, importPublicKey, publicJwkOf, type JSONWebKeySet, type JWK } from '../keys/index.js'
import { fn, optionProblem, parseOptions, withMethods } from '../lib/options.js'
import { parseStrictJson } from '../lib/strict-json.js'
import { MAX_KID_LENGTH } from '../policy/limits.js'
import { es256Sign, es256Verify } from '../tokens/es256.js'
import type { AuditHead } from './chain.js'
import type { AuditSink } from './sinks.js'
import type { AuditEventInput } from './types.js'

/** The `typ` of every checkpoint JWS. */
export const CHECKPOINT_TYPE = 'agent-trust-audit-checkpoint+jwt'

/** What a checkpoint states about one chain. */
export interface AuditCheckpoint extends AuditHead {
  /** Events the log had chained (seq + 1), the seal included once sealed. */
  readonly events: number
  /** Written after the seal: the chain ends here. */
  readonly sealed: boolean
  /** When it was signed, seconds since the epoch. */
  readonly iat: number
}

/**
 * Signs checkpoints. `sign` gets the JWS signing input and returns the base64url ES256
 * signature (IEEE P1363): a local key ({@link createCheckpointSigner}), or a call to a KMS
 * or to a host that holds the key.
 */
export interface CheckpointSigner {
  readonly kid: string
  sign(signingInput: string): string | Promise<string>
}

const KidSchema = z.string().min(1).max(MAX_KID_LENGTH)

/** The options of {@link createCheckpointSigner}: the key's kind is checked once it is imported. */
const CheckpointSignerOptionsSchema = z.strictObject({
  privateKey: z.union([z.custom<KeyObject>(isKeyObject), z.looseObject({ kty: z.string() })], {
    error: 'expected a private P-256 key (JWK or KeyObject)',
  }),
  kid: KidSchema,
})

/** A local signer from a private P-256 key (JWK or `KeyObject`), with the public JWKS to verify it. */
export async function createCheckpointSigner(options: {
  readonly privateKey: JWK | KeyObject
  readonly kid: string
}): Promise<CheckpointSigner & { jwks(): JSONWebKeySet }> {
  parseOptions('createCheckpointSigner', CheckpointSignerOptionsSchema, options)
  const { kid } = options
  let key: KeyObject
  try {
    key = isKeyObject(options.privateKey) ? options.privateKey : await importPrivateKey(options.privateKey)
  } catch (cause) {
    throw optionProblem('createCheckpointSigner', ['privateKey'], 'expected a private P-256 key (JWK or KeyObject)', cause)
  }
  // ES256 (RFC 7518 section 3.4) signs with P-256 only; a public key cannot sign at all.
  if (key.type !== 'private' || key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw optionProblem('createCheckpointSigner', ['privateKey'], 'expected a private P-256 key (JWK or KeyObject)')
  const pub = publicJwkOf(key.export({ format: 'jwk' }) as JWK, kid)
  return { kid, sign: (input) => es256Sign(key, input), jwks: () => ({ keys: [{ ...pub, alg: 'ES256', use: 'sig' }] }) }
}

function isKeyObject(v: unknown): v is KeyObject {
  return typeof v === 'object' && v !== null && typeof (v as KeyObject).export === 'function' && 'asymmetricKeyType' in v
}

/** Sign one checkpoint. */
export async function signCheckpoint(checkpoint: AuditCheckpoint, signer: CheckpointSigner): Promise<string> {
  const header = Buffer.from(JSON.stringify({ alg: 'ES256', typ: CHECKPOINT_TYPE, kid: signer.kid })).toString('base64url')
  const body = {
    chainId: checkpoint.chainId,
    seq: checkpoint.seq,
    hash: checkpoint.hash,
    events: checkpoint.events,
    sealed: checkpoint.sealed,
    iat: checkpoint.iat,
  }
  const input = `${header}.${Buffer.from(JSON.stringify(body)).toString('base64url')}`
  return `${input}.${await signer.sign(input)}`
}

const B64URL = /^[A-Za-z0-9_-]+$/

/**
 * Verify one checkpoint JWS against a JWKS; throws `ERR_AUDIT_TAMPERED` for anything that is
 * not a checkpoint signed by one of its keys.
 */
export async function verifyCheckpoint(jws: string, jwks: JSONWebKeySet): Promise<AuditCheckpoint> {
  const bad = (why: string) => new AuditTampered(`checkpoint refused: ${why}`, { details: { rule: 'checkpoint' } })
  if (typeof jws !== 'string' || jws.length > 4096) throw bad('not a compact JWS')
  const parts = jws.split('.')
  if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) throw bad('not a compact JWS')
  const [h, p, s] = parts as [string, string, string]
  let header: Record<string, unknown>
  let body: Record<string, unknown>
  try {
    header = parseStrictJson(Buffer.from(h, 'base64url')) as Record<string, unknown>
    body = parseStrictJson(Buffer.from(p, 'base64url')) as Record<string, unknown>
  } catch {
    throw bad('its header or body is not strict JSON')
  }
  if (header?.alg !== 'ES256' || header.typ !== CHECKPOINT_TYPE || typeof header.kid !== 'string' || Object.keys(header).length !== 3)
    throw bad(`its header is not {alg: ES256, typ: ${CHECKPOINT_TYPE}, kid}`)
  const jwk = (Array.isArray(jwks?.keys) ? jwks.keys : []).find(
    (k) => typeof k === 'object' && k !== null && (k as JWK).kid === header.kid,
  ) as JWK | undefined
  if (jwk === undefined) throw bad('no key of the given JWKS has its kid')
  const key = await importPublicKey(jwk)
  if (!es256Verify(key, `${h}.${p}`, Buffer.from(s, 'base64url'))) throw bad('its signature does not verify')
  const { chainId, seq, hash, events, sealed, iat } = body ?? {}
  if (
    typeof chainId !== 'string' ||
    !Number.isSafeInteger(seq) ||
    (seq as number) < -1 ||
    typeof hash !== 'string' ||
    !Number.isSafeInteger(events) ||
    typeof sealed !== 'boolean' ||
    !Number.isSafeInteger(iat) ||
    Object.keys(body).length !== 6
  )
    throw bad('its body is not {chainId, seq, hash, events, sealed, iat}')
  return { chainId, seq: seq as number, hash, events: events as number, sealed, iat: iat as number }
}

/**
 * Read checkpoint lines (`{"v":1,"checkpoint":"<jws>"}` as {@link withCheckpoints} writes
 * them, or bare JWS lines), verify every one, and return the latest per chain: the anchors
 * for `verifyAuditTrail`. A line that does not verify fails the whole read.
 */
export async function readCheckpoints(text: string, jwks: JSONWebKeySet): Promise<AuditCheckpoint[]> {
  const latest = new Map<string, AuditCheckpoint>()
  let n = 0
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '') continue
    n++
    let jws: unknown = line
    if (line.startsWith('{')) {
      try {
        jws = (parseStrictJson(Buffer.from(line)) as { checkpoint?: unknown }).checkpoint
      } catch {
        throw new AuditTampered(`checkpoint line ${n} is not JSON`, { details: { rule: 'checkpoint' } })
      }
    }
    const c = await verifyCheckpoint(jws as string, jwks)
    const prev = latest.get(c.chainId)
    if (prev === undefined || c.seq > prev.seq || (c.seq === prev.seq && c.sealed)) latest.set(c.chainId, c)
  }
  return [...latest.values()]
}

/** What {@link withCheckpoints} needs of a log: `createAuditLog()`'s. */
export interface CheckpointedLog {
  readonly chainId: string
  record(event: AuditEventInput): void
  head(): AuditHead
  flush(): Promise<void>
  close(): Promise<void>
}

export interface CheckpointOptions {
  readonly signer: CheckpointSigner
  /** Where checkpoint lines go: keep it away from the trail's own storage. */
  readonly sink: AuditSink
  /** Milliseconds between checkpoints (written only when the head moved). Default 60000, range 100-86400000. */
  readonly intervalMs?: number
  /** Told when signing or writing a checkpoint failed (the next interval retries). Default: a process warning. */
  readonly onError?: (error: Error) => void
}

/** The arguments of {@link withCheckpoints}. */
const WithCheckpointsArgsSchema = z.strictObject({
  log: withMethods<CheckpointedLog>('record', 'head', 'flush', 'close'),
  options: z.strictObject({
    signer: z.looseObject({ kid: KidSchema, sign: fn() }),
    sink: withMethods<AuditSink>('write', 'close'),
    intervalMs: z.int().min(100).max(86_400_000).optional(),
    onError: fn<(error: Error) => void>().optional(),
  }),
})

/**
 * The same log, writing signed checkpoints of its head to `options.sink`: every
 * `intervalMs` when the head moved, and one after the seal when the log is closed.
 */
export function withCheckpoints<L extends CheckpointedLog>(log: L, options: CheckpointOptions): L & { checkpoint(): Promise<void> } {
  parseOptions('withCheckpoints', WithCheckpointsArgsSchema, { log, options })
  const { signer, sink, intervalMs = 60_000 } = options
  const onError =
    options.onError ??
    ((e: Error) =>
      process.emitWarning(`agent-trust audit checkpoint failed (${e.message.slice(0, 200)})`, { code: 'AGENT_TRUST_AUDIT_CHECKPOINT' }))
  let lastSeq = -2
  let running: Promise<void> = Promise.resolve()
  const write = (sealed: boolean): Promise<void> => {
    running = running.then(async () => {
      // The head first, then the flush: the checkpoint never names an event the trail's
      // sinks were not asked to write before it.
      const head = log.head()
      if (head.seq === lastSeq && !sealed) return
      await log.flush()
      const jws = await signCheckpoint({ ...head, events: head.seq + 1, sealed, iat: Math.floor(Date.now() / 1000) }, signer)
      await sink.write([{ line: `${JSON.stringify({ v: 1, checkpoint: jws })}\n`, chainId: head.chainId, seq: head.seq, hash: head.hash }])
      lastSeq = head.seq
    })
    return running.catch((e: unknown) => onError(e instanceof Error ? e : new Error(String(e))))
  }
  const timer = setInterval(() => void write(false), intervalMs)
  timer.unref()
  const checkpoint = async (): Promise<void> => {
    await log.flush()
    await write(false)
  }
  const own: Record<PropertyKey, unknown> = {
    flush: checkpoint,
    checkpoint,
    close: async () => {
      clearInterval(timer)
      await log.close()
      await write(true)
      await sink.close()
    },
  }
  // Every other member is the log's own, called on the log (its private state stays its own).
  return new Proxy(log, {
    get(target, prop) {
      if (Object.prototype.hasOwnProperty.call(own, prop)) return own[prop]
      const v: unknown = Reflect.get(target, prop, target)
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  }) as L & { checkpoint(): Promise<void> }
}
