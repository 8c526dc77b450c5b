/**
 * Real TLS on loopback: who gets through an agent's mTLS server, and what identity the
 * handler sees. "Refused" means the handler never ran: the TLS handshake failed, or the
 * guard destroyed the socket before any HTTP byte was read.
 */
import * as x509 from '@peculiar/x509'
import { Agent } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AgentIdentity,
  CertificateRevocationList,
  createPeerIdentity,
  guardTlsServer,
  inspectWorkloadCertificate,
  mtlsAgentCall,
  mtlsClientOptions,
  mtlsServerOptions,
  tlsServerOptions,
  type CertificateAuthority,
  type TlsCredentials,
} from 'agent-trust/identity'
import { expectOptionMisuse, HOSTILE_KEY, HOSTILE_KEY_PATH } from '../support/options.js'
import { agentCredentials, craftCertificate, makeCa, request, startMtlsServer, TRUST_DOMAIN, type TestServer } from '../support/identity.js'

const DB = { kind: 'agent' as const, id: 'agent-database-reader' }

describe('mutual TLS between agents', () => {
  let ca: CertificateAuthority
  let otherCa: CertificateAuthority
  let revocations: CertificateRevocationList
  let server: TestServer
  let summarizer: TlsCredentials & { issued: { thumbprint: string; serialNumber: string } }
  let clock: number | undefined
  const peer = () => createPeerIdentity({ trustDomain: TRUST_DOMAIN, revocations, now: () => clock ?? Date.now() })

  beforeAll(async () => {
    ;[ca, otherCa] = await Promise.all([makeCa(), makeCa()])
    revocations = new CertificateRevocationList()
    const serverCreds = await agentCredentials(ca, DB.id)
    summarizer = await agentCredentials(ca, 'agent-summarizer-v2')
    const identify = peer()
    server = await startMtlsServer(
      serverCreds,
      (req, res) => {
        const id = identify(req)
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify(id))
      },
      { trustDomain: TRUST_DOMAIN, revocations, ca: ca.certificatePem },
    )
  })
  afterAll(async () => {
    await server.close()
  })

  const client = (creds: Partial<TlsCredentials> & { ca: string }, expect: typeof DB = DB) =>
    mtlsClientOptions(creds, { trustDomain: TRUST_DOMAIN, server: expect })

  /** Send one request and report whether the handler ran. */
  async function attempt(creds: Partial<TlsCredentials> & { ca: string }): Promise<{ ok: boolean; status?: number; body?: unknown }> {
    const before = server.handled()
    try {
      const r = await request(server.url, client(creds))
      return { ok: server.handled() > before, status: r.status, body: r.body }
    } catch {
      expect(server.handled()).toBe(before)
      return { ok: false }
    }
  }

  it('validates its options: the TLS builders name the option, never the private key', async () => {
    const secrets = [summarizer.key.split('\n')[1] as string]
    const server = DB
    await expectOptionMisuse(() => mtlsServerOptions({ ...summarizer, key: 'not pem' }), { path: 'credentials.key', secrets })
    await expectOptionMisuse(() => mtlsServerOptions(undefined as never), { path: 'credentials' })
    await expectOptionMisuse(() => tlsServerOptions({ ...summarizer, cert: 1 as never }), { path: 'credentials.cert', secrets })
    await expectOptionMisuse(() => mtlsClientOptions({ ca: '' }, { trustDomain: TRUST_DOMAIN, server }), { path: 'credentials.ca' })
    await expectOptionMisuse(() => mtlsClientOptions({ ca: summarizer.ca, key: summarizer.key }, { trustDomain: TRUST_DOMAIN, server }), {
      path: 'credentials',
      secrets,
    })
    await expectOptionMisuse(() => mtlsClientOptions(summarizer, { trustDomain: TRUST_DOMAIN } as never), { path: 'options.server' })
    await expectOptionMisuse(() => mtlsClientOptions(summarizer, { trustDomain: TRUST_DOMAIN, server, revocation: {} } as never), {
      path: 'options.revocation',
      secrets,
    })
    await expectOptionMisuse(() => mtlsAgentCall(summarizer, { revocations: {} as never }), { path: 'options.revocations', secrets })
    await expectOptionMisuse(() => mtlsAgentCall(summarizer, { trustdomain: TRUST_DOMAIN } as never), { path: 'options.trustdomain' })
    await expectOptionMisuse(() => mtlsAgentCall(summarizer, { [HOSTILE_KEY]: 1 } as never), { path: `options${HOSTILE_KEY_PATH}` })
    const later = mtlsAgentCall(() => ({ ...summarizer, key: 'x' }))
    await expectOptionMisuse(() => later.connect({ agentId: DB.id }), { path: 'credentials.key' })
  })

  it('validates its options: createPeerIdentity, guardTlsServer and AgentIdentity.obtain name the option', async () => {
    const base = { trustDomain: TRUST_DOMAIN }
    await expectOptionMisuse(() => createPeerIdentity(undefined as never), { path: 'trustDomain' })
    await expectOptionMisuse(() => createPeerIdentity({ trustDomain: 'Not A Domain' }), { path: 'trustDomain' })
    await expectOptionMisuse(() => createPeerIdentity({ ...base, revocations: {} as never }), { path: 'revocations' })
    await expectOptionMisuse(() => createPeerIdentity({ ...base, ca: 'not pem' }), { path: 'ca' })
    await expectOptionMisuse(() => createPeerIdentity({ ...base, kinds: ['operator'] }), { path: 'kinds' })
    await expectOptionMisuse(() => createPeerIdentity({ ...base, revocation: revocations } as never), { path: 'revocation' })
    await expectOptionMisuse(() => createPeerIdentity({ ...base, [HOSTILE_KEY]: 1 } as never), { path: HOSTILE_KEY_PATH })
    const tlsServer = { prependListener: () => undefined, off: () => undefined }
    await expectOptionMisuse(() => guardTlsServer({} as never, base), { path: 'server' })
    await expectOptionMisuse(() => guardTlsServer(tlsServer, { ...base, onRefused: 'log' as never }), { path: 'options.onRefused' })
    await expectOptionMisuse(() => guardTlsServer(tlsServer, { ...base, kinds: ['robot' as never] }), { path: 'options.kinds[0]' })
    await expectOptionMisuse(() => guardTlsServer(tlsServer, { ...base, now: 5 as never }), { path: 'options.now' })
    expect(guardTlsServer(tlsServer, { ...base, kinds: ['agent', 'operator'] })).toBeTypeOf('function')
    let asked = 0
    const obtain = async () => {
      asked++
      return { certificatePem: '', caPem: '' }
    }
    const identity = { trustDomain: TRUST_DOMAIN, workload: DB, obtain }
    await expectOptionMisuse(() => AgentIdentity.obtain({ ...identity, renewAtFraction: 1 }), { path: 'renewAtFraction' })
    await expectOptionMisuse(() => AgentIdentity.obtain({ ...identity, workload: { kind: 'agent', id: 'a@b' } }), { path: 'workload.id' })
    await expectOptionMisuse(() => AgentIdentity.obtain({ ...identity, workload: { kind: 'robot' as never, id: 'a' } }), {
      path: 'workload.kind',
    })
    await expectOptionMisuse(() => AgentIdentity.obtain({ ...identity, renew: 'later' as never }), { path: 'renew' })
    await expectOptionMisuse(() => AgentIdentity.obtain({ ...identity, renewAt: 0.5 } as never), { path: 'renewAt' })
    await expectOptionMisuse(() => AgentIdentity.obtain({ workload: DB, obtain } as never), { path: 'trustDomain' })
    // Refused before any CSR reaches the requester.
    expect(asked).toBe(0)
  })

  it('lets an agent with a valid certificate through and names it by its SPIFFE ID, with the x5t#S256 thumbprint', async () => {
    const r = await attempt(summarizer)
    expect(r).toMatchObject({
      ok: true,
      status: 200,
      body: { agentId: 'agent-summarizer-v2', certificateThumbprint: summarizer.issued.thumbprint },
    })
  })

  it('refuses an agent without a certificate at the handshake', async () => {
    expect(await attempt({ ca: ca.certificatePem })).toEqual({ ok: false })
  })

  it('refuses a certificate from another CA at the handshake', async () => {
    const foreign = await agentCredentials(otherCa, 'agent-summarizer-v2')
    expect(await attempt({ cert: foreign.cert, key: foreign.key, ca: ca.certificatePem })).toEqual({ ok: false })
  })

  it('refuses an expired certificate at the handshake', async () => {
    const expired = await agentCredentials(ca, 'agent-summarizer-v2', { ttlSeconds: 60, nowMs: Date.now() - 3 * 3600_000 })
    expect(await attempt(expired)).toEqual({ ok: false })
  })

  it('refuses a revoked certificate (by serial, and by identity) before any request is read', async () => {
    const victim = await agentCredentials(ca, 'agent-summarizer-v2')
    expect((await attempt(victim)).ok).toBe(true)
    revocations.revokeSerial(victim.issued.serialNumber, Date.now() + 3600_000)
    expect(await attempt(victim)).toEqual({ ok: false })

    const cl = new CertificateRevocationList()
    const other = await agentCredentials(ca, 'agent-orchestrator')
    cl.revokeIdentity(`spiffe://${TRUST_DOMAIN}/agent/agent-orchestrator`, Date.now())
    const c = inspectWorkloadCertificate(x509.PemConverter.decodeFirst(other.cert) as never, TRUST_DOMAIN)
    expect(cl.isRevoked(c)).toBe(true)
    // A certificate issued after the revocation time is not covered (the CA refuses to issue one anyway).
    expect(cl.isRevoked({ ...c, notBeforeMs: Date.now() + 10_000 })).toBe(false)
  })

  it.each([
    ['a DNS SAN instead of a SPIFFE ID', { names: [{ type: 'dns' as const, value: 'agent-summarizer-v2' }] }, 'san'],
    ['an https URI', { names: [{ type: 'url' as const, value: 'https://agent-trust.test/agent/agent-summarizer-v2' }] }, 'san'],
    [
      'a SPIFFE ID of another trust domain',
      { names: [{ type: 'url' as const, value: 'spiffe://other.test/agent/agent-summarizer-v2' }] },
      'trust-domain',
    ],
    [
      'a SPIFFE ID that is not an agent',
      { names: [{ type: 'url' as const, value: `spiffe://${TRUST_DOMAIN}/workload/agent-summarizer-v2` }] },
      'san',
    ],
    [
      'two URI SANs',
      {
        names: [
          { type: 'url' as const, value: `spiffe://${TRUST_DOMAIN}/agent/agent-summarizer-v2` },
          { type: 'url' as const, value: `spiffe://${TRUST_DOMAIN}/agent/agent-orchestrator` },
        ],
      },
      'san',
    ],
    [
      'a URI and a DNS name',
      {
        names: [
          { type: 'url' as const, value: `spiffe://${TRUST_DOMAIN}/agent/agent-summarizer-v2` },
          { type: 'dns' as const, value: 'localhost' },
        ],
      },
      'san',
    ],
    ['two SAN extensions', { sanExtensions: 2 }, 'san'],
    ['a CA certificate', { isCa: true, keyUsage: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign }, 'ca'],
    ['keyCertSign on a leaf', { keyUsage: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign }, 'key-usage'],
    ['no client-auth EKU', { eku: [x509.ExtendedKeyUsage.serverAuth] }, 'key-usage'],
  ])('refuses a CA-signed certificate with %s', async (_name, options, rule) => {
    const crafted = await craftCertificate(ca, options)
    expect(await attempt(crafted)).toEqual({ ok: false })
    // And the validator names the reason.
    expect(() => inspectWorkloadCertificate(crafted.der, TRUST_DOMAIN, 'client')).toThrow(
      expect.objectContaining({ code: 'ERR_PEER_UNAUTHENTICATED', details: { rule } }),
    )
  })

  it('refuses a certificate an agent signed with its own key (a leaf is not a CA)', async () => {
    const { webcrypto } = await import('node:crypto')
    const agentKey = await webcrypto.subtle.importKey(
      'pkcs8',
      x509.PemConverter.decodeFirst(summarizer.key),
      { name: 'ECDSA', namedCurve: 'P-256' },
      false,
      ['sign'],
    )
    const forged = await craftCertificate(ca, {
      names: [{ type: 'url', value: `spiffe://${TRUST_DOMAIN}/agent/agent-orchestrator` }],
      signer: { key: agentKey, issuer: new x509.X509Certificate(summarizer.cert).subject },
    })
    expect(await attempt({ cert: forged.cert + summarizer.cert, key: forged.key, ca: ca.certificatePem })).toEqual({ ok: false })
  })

  it('refuses an operator or authority certificate on an agent endpoint', async () => {
    const operator = await ca.issueLocal({ kind: 'operator', id: 'alice' })
    expect(await attempt(operator)).toEqual({ ok: false })
  })

  it('re-checks revocation and expiry on every request of a kept-alive connection', async () => {
    const creds = await agentCredentials(ca, 'agent-orchestrator', { ttlSeconds: 3600 })
    const dispatcher = new Agent({ connect: client(creds), connections: 1 })
    try {
      expect((await request(server.url, {}, { dispatcher })).status).toBe(200)
      // The same socket, later than notAfter: refused per request.
      clock = Date.now() + 2 * 3600_000
      expect(await request(server.url, {}, { dispatcher })).toMatchObject({
        status: 401,
        body: { error: { code: 'ERR_PEER_UNAUTHENTICATED', rule: 'expired' } },
      })
      clock = undefined
      revocations.revokeSerial(creds.issued.serialNumber, Date.now() + 3600_000)
      expect(await request(server.url, {}, { dispatcher })).toMatchObject({
        status: 401,
        body: { error: { code: 'ERR_PEER_UNAUTHENTICATED', rule: 'revoked' } },
      })
    } finally {
      clock = undefined
      await dispatcher.close()
    }
  })

  it('identifies the peer on resumed TLS sessions too (new connections from one client)', async () => {
    const dispatcher = new Agent({ connect: client(summarizer), pipelining: 0 })
    try {
      for (let i = 0; i < 3; i++) {
        // `connection: close` forces a new connection, which resumes the cached TLS session.
        const r = await request(server.url, {}, { dispatcher, headers: { connection: 'close' } })
        expect(r).toMatchObject({
          status: 200,
          body: { agentId: 'agent-summarizer-v2', certificateThumbprint: summarizer.issued.thumbprint },
        })
      }
    } finally {
      await dispatcher.close()
    }
  })

  it("checks the server too: a client expecting the database reader refuses another agent's server", async () => {
    const wrong = client(summarizer, { kind: 'agent', id: 'agent-orchestrator' })
    await expect(request(server.url, wrong)).rejects.toThrow()
    // A server from another CA is refused as well.
    const foreignServer = await startMtlsServer(await agentCredentials(otherCa, DB.id), (_q, s) => void s.end('{}'))
    try {
      await expect(request(foreignServer.url, client(summarizer))).rejects.toThrow()
      expect(foreignServer.handled()).toBe(0)
    } finally {
      await foreignServer.close()
    }
  })

  it('works for an HTTP/2 server too (compat request and stream session)', async () => {
    const http2 = await import('node:http2')
    const serverCreds = await agentCredentials(ca, DB.id)
    const identify = peer()
    let handled = 0
    const h2 = http2.createSecureServer(mtlsServerOptions(serverCreds), (req, res) => {
      handled++
      res.end(JSON.stringify(identify(req)))
    })
    guardTlsServer(h2, { trustDomain: TRUST_DOMAIN, revocations })
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r))
    const url = `https://127.0.0.1:${(h2.address() as { port: number }).port}`
    const get = (creds: Partial<TlsCredentials> & { ca: string }) =>
      new Promise<string>((resolve, reject) => {
        const session = http2.connect(url, client(creds))
        session.on('error', reject)
        const req = session.request({ ':path': '/' })
        let body = ''
        req.on('data', (d: Buffer) => (body += d.toString()))
        req.on('end', () => {
          session.close()
          resolve(body)
        })
        req.on('error', (e) => {
          session.destroy()
          reject(e)
        })
      })
    try {
      expect(JSON.parse(await get(summarizer))).toEqual({
        agentId: 'agent-summarizer-v2',
        certificateThumbprint: summarizer.issued.thumbprint,
      })
      const crafted = await craftCertificate(ca, { names: [{ type: 'dns', value: 'agent-summarizer-v2' }] })
      // The session is destroyed at the handshake: the stream ends empty or errors, the handler never runs.
      expect(await get(crafted).catch(() => '')).toBe('')
      expect(handled).toBe(1)
    } finally {
      await new Promise<void>((r) => h2.close(() => r()))
    }
  })

  it('refuses a plain (non-TLS) request object in the peer hook', () => {
    expect(() => peer()({ socket: {} })).toThrow(
      expect.objectContaining({ code: 'ERR_PEER_UNAUTHENTICATED', details: { rule: 'not-tls' } }),
    )
    expect(() => peer()({})).toThrow(expect.objectContaining({ code: 'ERR_PEER_UNAUTHENTICATED' }))
  })
})
