import { createHash, X509Certificate as NodeX509Certificate, webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  CertificateAuthority,
  createIdentityRequest,
  DEFAULT_CERTIFICATE_TTL_SECONDS,
  inspectWorkloadCertificate,
  isSpiffeRepresentable,
  parseSpiffeId,
  spiffeIdOf,
  trustDomainOf,
  WORKLOAD_KINDS,
} from 'agent-trust/identity'
import { makeCa, TRUST_DOMAIN } from '../support/identity.js'

const crypto = webcrypto as never
const ECDSA = { name: 'ECDSA', hash: 'SHA-256' }
const SUMMARIZER = { kind: 'agent' as const, id: 'agent-summarizer-v2' }

/** A CSR with whatever SAN names and keys an attacker likes. */
async function rawCsr(
  options: { names?: Array<{ type: 'url' | 'dns'; value: string }> | null; curve?: 'P-256' | 'P-384'; signWith?: webcrypto.CryptoKey } = {},
): Promise<string> {
  const curve = options.curve ?? 'P-256'
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: curve }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair
  const names =
    options.names === undefined ? [{ type: 'url' as const, value: `spiffe://${TRUST_DOMAIN}/agent/agent-summarizer-v2` }] : options.names
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      keys: { publicKey: keys.publicKey, privateKey: options.signWith ?? keys.privateKey } as never,
      signingAlgorithm: curve === 'P-384' ? { name: 'ECDSA', hash: 'SHA-384' } : ECDSA,
      extensions: names === null ? [] : [new x509.SubjectAlternativeNameExtension(names)],
    },
    crypto,
  )
  return csr.toString('pem')
}

describe('the internal CA', () => {
  let ca: CertificateAuthority
  beforeAll(async () => {
    ca = await makeCa()
  })

  it('is a P-256 root for one trust domain: cA with pathLen 0, keyCertSign, the trust domain as SPIFFE ID', () => {
    const c = ca.certificate
    const bc = c.getExtension(x509.BasicConstraintsExtension)!
    expect(bc.ca).toBe(true)
    expect(bc.pathLength).toBe(0)
    expect(bc.critical).toBe(true)
    const ku = c.getExtension(x509.KeyUsagesExtension)!
    expect(ku.usages & x509.KeyUsageFlags.keyCertSign).toBeTruthy()
    expect(trustDomainOf(ca.certificatePem)).toBe(TRUST_DOMAIN)
    expect(new NodeX509Certificate(ca.certificatePem).ca).toBe(true)
  })

  it('issues an X.509-SVID from a CSR: one URI SAN, not a CA, digitalSignature, client+server auth, 24 h', async () => {
    const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: SUMMARIZER })
    const before = Date.now()
    const issued = await ca.issue({ csr, workload: SUMMARIZER })
    const cert = new x509.X509Certificate(issued.certificatePem)
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.toJSON()
    expect(san).toEqual([{ type: 'url', value: `spiffe://${TRUST_DOMAIN}/agent/agent-summarizer-v2` }])
    expect(cert.getExtension(x509.BasicConstraintsExtension)!.ca).toBe(false)
    const ku = cert.getExtension(x509.KeyUsagesExtension)!
    expect(ku.usages).toBe(x509.KeyUsageFlags.digitalSignature)
    expect(ku.critical).toBe(true)
    expect(cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toEqual([
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ])
    const lifetime = issued.notAfter.getTime() - before
    expect(Math.abs(lifetime - DEFAULT_CERTIFICATE_TTL_SECONDS * 1000)).toBeLessThan(5_000)
    expect(issued.thumbprint).toBe(createHash('sha256').update(new Uint8Array(cert.rawData)).digest('base64url'))
    const node = new NodeX509Certificate(issued.certificatePem)
    expect(node.checkIssued(new NodeX509Certificate(ca.certificatePem))).toBe(true)
    expect(node.verify(new NodeX509Certificate(ca.certificatePem).publicKey)).toBe(true)
    expect(issued.serialNumber).toMatch(/^[0-9a-f]+$/)
    // And the validator reads back exactly that identity.
    expect(inspectWorkloadCertificate(new Uint8Array(cert.rawData), TRUST_DOMAIN).workload).toEqual(SUMMARIZER)
  })

  it('gives every certificate a distinct serial', async () => {
    const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: SUMMARIZER })
    const serials = new Set<string>()
    for (let i = 0; i < 5; i++) serials.add((await ca.issue({ csr, workload: SUMMARIZER })).serialNumber)
    expect(serials.size).toBe(5)
  })

  it("never trusts the CSR's claim: a CSR for another agent is refused for the authenticated one", async () => {
    const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind: 'agent', id: 'agent-orchestrator' } })
    await expect(ca.issue({ csr, workload: SUMMARIZER })).rejects.toMatchObject({ code: 'ERR_CSR_DENIED', details: { rule: 'identity' } })
    // Nor may an agent ask for an operator or authority identity with its own name.
    const op = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: { kind: 'operator', id: 'agent-summarizer-v2' } })
    await expect(ca.issue({ csr: op.csr, workload: SUMMARIZER })).rejects.toMatchObject({
      code: 'ERR_CSR_DENIED',
      details: { rule: 'identity' },
    })
  })

  it.each([
    [
      'two URIs',
      [
        { type: 'url', value: `spiffe://${TRUST_DOMAIN}/agent/agent-summarizer-v2` },
        { type: 'url', value: `spiffe://${TRUST_DOMAIN}/agent/agent-orchestrator` },
      ],
    ],
    [
      'a DNS name beside the URI',
      [
        { type: 'url', value: `spiffe://${TRUST_DOMAIN}/agent/agent-summarizer-v2` },
        { type: 'dns', value: 'evil.example' },
      ],
    ],
    ['a DNS name only', [{ type: 'dns', value: 'agent-summarizer-v2' }]],
    ['another trust domain', [{ type: 'url', value: 'spiffe://other.test/agent/agent-summarizer-v2' }]],
    ['no SAN at all', null],
  ] as const)('refuses a CSR with %s', async (_name, names) => {
    const csr = await rawCsr({ names: names as never })
    await expect(ca.issue({ csr, workload: SUMMARIZER })).rejects.toMatchObject({ code: 'ERR_CSR_DENIED', details: { rule: 'identity' } })
  })

  it('requires proof of possession: a CSR signed by another key is refused', async () => {
    const other = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair
    const csr = await rawCsr({ signWith: other.privateKey })
    await expect(ca.issue({ csr, workload: SUMMARIZER })).rejects.toMatchObject({ code: 'ERR_CSR_DENIED', details: { rule: 'signature' } })
  })

  it('accepts P-256 keys only', async () => {
    const csr = await rawCsr({ curve: 'P-384' })
    await expect(ca.issue({ csr, workload: SUMMARIZER })).rejects.toMatchObject({ code: 'ERR_CSR_DENIED', details: { rule: 'key' } })
  })

  it.each([
    ['garbage', 'not a csr'],
    ['a certificate instead of a CSR', 'CERT'],
    ['an oversized string', 'x'.repeat(20_000)],
    ['a non-string', 42],
  ])('refuses %s as malformed', async (_n, value) => {
    const csr = value === 'CERT' ? ca.certificatePem : value
    await expect(ca.issue({ csr: csr as string, workload: SUMMARIZER })).rejects.toMatchObject({
      code: 'ERR_CSR_DENIED',
      details: { rule: 'malformed' },
    })
  })

  it('refuses workloads whose id cannot be a SPIFFE path, and out-of-range lifetimes', async () => {
    const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: SUMMARIZER })
    await expect(ca.issue({ csr, workload: { kind: 'agent', id: 'agent@host' } })).rejects.toMatchObject({ code: 'ERR_CSR_DENIED' })
    await expect(ca.issue({ csr, workload: { kind: 'root' as never, id: 'x' } })).rejects.toMatchObject({ code: 'ERR_CSR_DENIED' })
    await expect(ca.issue({ csr, workload: SUMMARIZER, ttlSeconds: 10 })).rejects.toMatchObject({
      code: 'ERR_CSR_DENIED',
      details: { rule: 'ttl' },
    })
    await expect(ca.issue({ csr, workload: SUMMARIZER, ttlSeconds: 30 * 86400 })).rejects.toMatchObject({
      code: 'ERR_CSR_DENIED',
      details: { rule: 'ttl' },
    })
  })

  it('exports and loads (replicas share one CA); a key of another CA is refused', async () => {
    const exported = await ca.export()
    const replica = await CertificateAuthority.load(exported)
    expect(replica.trustDomain).toBe(TRUST_DOMAIN)
    const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: SUMMARIZER })
    const issued = await replica.issue({ csr, workload: SUMMARIZER })
    expect(new NodeX509Certificate(issued.certificatePem).checkIssued(new NodeX509Certificate(ca.certificatePem))).toBe(true)
    const other = await (await makeCa()).export()
    await expect(
      CertificateAuthority.load({ certificatePem: exported.certificatePem, privateKeyPem: other.privateKeyPem }),
    ).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' })
    await expect(
      CertificateAuthority.load({ certificatePem: issued.certificatePem, privateKeyPem: exported.privateKeyPem }),
    ).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' })
  })

  it('refuses a bad trust domain at creation', async () => {
    await expect(CertificateAuthority.create({ trustDomain: 'Not A Domain' })).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID' })
  })
})

describe('SPIFFE IDs', () => {
  const segment = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/).filter((s) => s !== '.' && s !== '..')
  const id = fc
    .array(segment, { minLength: 1, maxLength: 4 })
    .map((s) => s.join('/'))
    .filter((s) => s.length <= 200)

  it('round-trips every representable workload, one spelling per identity', () => {
    fc.assert(
      fc.property(fc.constantFrom(...WORKLOAD_KINDS), id, (kind, i) => {
        const uri = spiffeIdOf(TRUST_DOMAIN, { kind, id: i })
        expect(parseSpiffeId(uri, TRUST_DOMAIN)).toEqual({ kind, id: i })
        expect(parseSpiffeId(uri, 'other.test')).toBeUndefined()
      }),
    )
  })

  it('accepts only canonical IDs: whatever parses re-serialises to the same string', () => {
    const noisy = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc
        .tuple(
          fc.constantFrom('spiffe://agent-trust.test/agent/', 'spiffe://agent-trust.test/', 'SPIFFE://agent-trust.test/agent/'),
          fc.string({ maxLength: 40 }),
        )
        .map(([a, b]) => a + b),
    )
    fc.assert(
      fc.property(noisy, (uri) => {
        const w = parseSpiffeId(uri, TRUST_DOMAIN)
        if (w !== undefined) expect(spiffeIdOf(TRUST_DOMAIN, w)).toBe(uri)
      }),
      { numRuns: 500 },
    )
  })

  it.each([
    'spiffe://agent-trust.test/agent/a/../b',
    'spiffe://agent-trust.test/agent/a//b',
    'spiffe://agent-trust.test/agent/a/',
    'spiffe://agent-trust.test/agent/a%2Fb',
    'spiffe://agent-trust.test/agent/a?x=1',
    'spiffe://agent-trust.test/agent/a#f',
    'spiffe://agent-trust.test:443/agent/a',
    'spiffe://user@agent-trust.test/agent/a',
    'spiffe://agent-trust.test/agents/a',
    'spiffe://agent-trust.test/agent/',
    'spiffe://AGENT-TRUST.test/agent/a',
  ])('refuses %s', (uri) => {
    expect(parseSpiffeId(uri, TRUST_DOMAIN)).toBeUndefined()
  })

  it('knows which agent ids can hold a certificate', () => {
    expect(isSpiffeRepresentable('agent-summarizer-v2')).toBe(true)
    expect(isSpiffeRepresentable('team/agent.v2')).toBe(true)
    expect(isSpiffeRepresentable('agent@host')).toBe(false)
    expect(isSpiffeRepresentable('a:b')).toBe(false)
    expect(isSpiffeRepresentable('a/../b')).toBe(false)
  })
})

describe('hostile input never escapes as an uncoded error', () => {
  let ca: CertificateAuthority
  let der: Uint8Array
  beforeAll(async () => {
    ca = await makeCa()
    const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: SUMMARIZER })
    der = new Uint8Array(new x509.X509Certificate((await ca.issue({ csr, workload: SUMMARIZER })).certificatePem).rawData)
  })

  it('certificate validation: random bytes and mutated certificates give ERR_PEER_UNAUTHENTICATED or a valid identity', () => {
    const mutated = fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([pos, x]) => {
      const copy = new Uint8Array(der)
      const i = pos % copy.length
      copy[i] = (copy[i] as number) ^ x
      return copy
    })
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 600 }), mutated), (bytes) => {
        try {
          const c = inspectWorkloadCertificate(bytes, TRUST_DOMAIN)
          // Structure only: the signature is the TLS stack's job, so a flipped signature bit still parses.
          expect(c.workload.kind).toBe('agent')
        } catch (e) {
          expect(e).toMatchObject({ code: 'ERR_PEER_UNAUTHENTICATED' })
        }
      }),
      { numRuns: 300 },
    )
  })

  it('CSR checking: random and mutated CSRs give ERR_CSR_DENIED, never a certificate for another identity', async () => {
    const { csr } = await createIdentityRequest({ trustDomain: TRUST_DOMAIN, workload: SUMMARIZER })
    const body = csr.replace(/-----[^-]+-----|\s/g, '')
    const mutated = fc
      .tuple(fc.nat(), fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'))
      .map(([pos, ch]) => {
        const i = pos % body.length
        const b = body.slice(0, i) + ch + body.slice(i + 1)
        return `-----BEGIN CERTIFICATE REQUEST-----\n${b}\n-----END CERTIFICATE REQUEST-----\n`
      })
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 200 }), mutated), async (input) => {
        try {
          const issued = await ca.issue({ csr: input, workload: SUMMARIZER })
          expect(issued.workload).toEqual(SUMMARIZER)
        } catch (e) {
          expect(e).toMatchObject({ code: 'ERR_CSR_DENIED' })
        }
      }),
      { numRuns: 150 },
    )
  })
})
