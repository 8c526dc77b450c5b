/** Public test vectors kept in the repository (test/vectors/, each folder with its licence). */
import { readFileSync } from 'node:fs'

export function wycheproof(name: 'ecdsa_secp256r1_sha256_p1363_test.json' | 'json_web_signature_test.json'): any {
  return JSON.parse(readFileSync(new URL(`../vectors/wycheproof/${name}`, import.meta.url), 'utf8'))
}
