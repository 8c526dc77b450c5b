/**
 * One reading of every token: a header or payload signed by a trusted key that names a member
 * twice (top level, nested `context`, a `\u` spelling) or is not valid UTF-8 is refused by the
 * verifier, by exchange (which reads through the verifier) and by `token inspect`.
 */
import { createSign, randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { cliInProcess } from '../support/cli.js'
import { decodeHeader, decodePayload, makeKernel } from '../support/kernel.js'

const k = await makeKernel()
const good = await k.mintRead()
const header = decodeHeader(good)
const payload = decodePayload(good)
const { privateKey, kid } = k.authority.keys.active()

/** Sign raw header and payload bytes, like the authority's key would. */
function signBytes(h: Buffer | string, p: Buffer | string): string {
  const input = `${Buffer.from(h).toString('base64url')}.${Buffer.from(p).toString('base64url')}`
  const s = createSign('sha256').update(input).sign({ key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')
  return `${input}.${s}`
}
const headerText = JSON.stringify(header)
const payloadText = (extra = '') => JSON.stringify({ ...payload, jti: randomUUID() }).replace(/}$/, `${extra}}`)

const refused = async (token: string, reason: string) => {
  await expect(k.verifier.verify(token, k.read)).rejects.toMatchObject({ code: 'ERR_TOKEN_MALFORMED', details: { reason } })
  expect((await cliInProcess(['token', 'inspect', token])).code).toBe(4)
}

describe('one strict reading of every token', () => {
  it('the control: the same construction without a duplicate verifies', async () => {
    await expect(k.verifier.verify(signBytes(headerText, payloadText()), k.read)).resolves.toBeDefined()
    expect(kid).toBe(header.kid)
  })

  it('refuses duplicate header members: alg, kid, typ, also through a \\u escape', async () => {
    await refused(signBytes(headerText.replace(/}$/, ',"kid":"other"}'), payloadText()), 'duplicate')
    await refused(signBytes(headerText.replace(/}$/, ',"\\u0061lg":"none"}'), payloadText()), 'duplicate')
    await refused(signBytes(headerText.replace(/}$/, ',"t\\u0079p":"JWT"}'), payloadText()), 'duplicate')
  })

  it('refuses duplicate payload claims at the top and inside context', async () => {
    for (const extra of [',"trust_level":3', ',"aud":"agent-other"', ',"iss":"x"', ',"delegation_depth":5', ',"\\u006ati":"j"']) {
      await refused(signBytes(headerText, payloadText(extra)), 'duplicate')
    }
    const nested = JSON.stringify({ ...payload, jti: randomUUID() }).replace('"context":{', '"context":{"task":"x","task":"y",')
    await refused(signBytes(headerText, nested), 'duplicate')
  })

  it('refuses invalid UTF-8 in the payload and the header: overlong, CESU-8, lone continuation', async () => {
    for (const bad of [[0xc0, 0xaf], [0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80], [0x80]]) {
      const p = Buffer.concat([Buffer.from(payloadText().replace(/}$/, ',"x":"')), Buffer.from(bad), Buffer.from('"}')])
      await refused(signBytes(headerText, p), 'utf8')
      const h = Buffer.concat([Buffer.from(headerText.replace(/"}$/, '')), Buffer.from(bad), Buffer.from('"}')])
      await expect(k.verifier.verify(signBytes(h, payloadText()), k.read)).rejects.toMatchObject({ code: 'ERR_TOKEN_MALFORMED' })
    }
  })

  it('refuses any signed payload with a claim named twice (property)', async () => {
    const names = fc.constantFrom('alg', 'aud', 'iss', 'sub', 'jti', 'trust_level', 'delegation_depth', 'scope', 'exp')
    await fc.assert(
      fc.asyncProperty(names, fc.jsonValue({ maxDepth: 1 }), async (name, v) => {
        const dup = `,${JSON.stringify(name)}:${JSON.stringify(v)}`
        const t = signBytes(headerText, payloadText(dup).replace(/^\{/, `{${JSON.stringify(name)}:0,`))
        await expect(k.verifier.verify(t, k.read)).rejects.toMatchObject({ code: 'ERR_TOKEN_MALFORMED' })
      }),
      { numRuns: 40 },
    )
  })
})
