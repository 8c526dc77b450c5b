import { describe, expect, it } from 'vitest'
import { addressClassAllowed, classifyAddress } from 'agent-trust/egress'

describe('classifyAddress', () => {
  it.each([
    // global
    ['8.8.8.8', 'global'],
    ['93.184.216.34', 'global'],
    ['2606:4700:4700::1111', 'global'],
    // IPv4 specials
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'carrierGradeNat'],
    ['100.127.255.255', 'carrierGradeNat'],
    ['169.254.1.1', 'linkLocal'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['240.0.0.1', 'reserved'],
    ['192.0.0.8', 'reserved'],
    ['198.18.0.1', 'benchmarking'],
    ['198.19.255.255', 'benchmarking'],
    ['192.0.2.1', 'documentation'],
    ['198.51.100.7', 'documentation'],
    ['203.0.113.9', 'documentation'],
    // cloud metadata
    ['169.254.169.254', 'metadata'],
    ['169.254.170.2', 'metadata'],
    ['100.100.100.200', 'metadata'],
    ['168.63.129.16', 'metadata'],
    ['fd00:ec2::254', 'metadata'],
    ['fd00:ec2:0:0:0:0:0:254', 'metadata'],
    ['fd20:ce::254', 'metadata'],
    // IPv6 specials
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'linkLocal'],
    ['ff02::1', 'multicast'],
    ['fc00::1', 'uniqueLocal'],
    ['fd12:3456::1', 'uniqueLocal'],
    ['fec0::1', 'siteLocal'],
    ['2001:db8::1', 'documentation'],
    ['3fff::1', 'documentation'],
    ['2001:2::1', 'benchmarking'],
    ['100::1', 'reserved'],
    ['4000::1', 'reserved'],
    ['2001:10::1', 'reserved'],
    // IPv6 forms embedding IPv4: never global, whatever IPv4 they carry
    ['::ffff:127.0.0.1', 'ipv4Embedded'],
    ['::ffff:7f00:1', 'ipv4Embedded'],
    ['::ffff:8.8.8.8', 'ipv4Embedded'],
    ['::127.0.0.1', 'ipv4Embedded'],
    ['::a9fe:a9fe', 'ipv4Embedded'],
    ['::ffff:0:a00:1', 'ipv4Embedded'],
    ['64:ff9b::a9fe:a9fe', 'ipv4Embedded'],
    ['64:ff9b::8.8.8.8', 'ipv4Embedded'],
    ['64:ff9b:1::a00:1', 'ipv4Embedded'],
    ['2002:7f00:1::1', 'ipv4Embedded'],
    ['2002:a9fe:a9fe::', 'ipv4Embedded'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'ipv4Embedded'],
    // not strict spellings: refused, never reinterpreted
    ['127.1', 'invalid'],
    ['0x7f.0.0.1', 'invalid'],
    ['0177.0.0.1', 'invalid'],
    ['010.0.0.1', 'invalid'],
    ['2130706433', 'invalid'],
    ['fe80::1%eth0', 'invalid'],
    ['[::1]', 'invalid'],
    ['localhost', 'invalid'],
    ['', 'invalid'],
  ])('%s is %s', (address, cls) => {
    expect(classifyAddress(address)).toBe(cls)
  })

  it('internal destinations accept loopback, private, unique-local and CGNAT only', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', 'fd12::1', '100.64.1.1', '::1'])
      expect(addressClassAllowed(classifyAddress(a), true)).toBe(true)
    for (const a of [
      '169.254.169.254',
      'fd00:ec2::254',
      '169.254.1.1',
      '::ffff:127.0.0.1',
      '0.0.0.0',
      '224.0.0.1',
      'fe80::1',
      '64:ff9b::a00:1',
    ]) {
      expect(addressClassAllowed(classifyAddress(a), true)).toBe(false)
    }
    for (const a of ['127.0.0.1', '10.1.2.3', 'fd12::1', '100.64.1.1']) expect(addressClassAllowed(classifyAddress(a), false)).toBe(false)
  })
})
