/**
 * Trust levels and what each permits. Pure.
 */
export type TrustLevel = 'L0' | 'L1' | 'L2' | 'L3'
export type Operation = 'read' | 'write' | 'execute'
/** Levels that may hold a token (L0 never receives one). */
export type TokenTrustLevel = Exclude<TrustLevel, 'L0'>

export const TRUST_LEVELS: readonly TrustLevel[] = ['L0', 'L1', 'L2', 'L3']
export const OPERATIONS: readonly Operation[] = ['read', 'write', 'execute']

const RANK: Readonly<Record<TrustLevel, number>> = { L0: 0, L1: 1, L2: 2, L3: 3 }

export function levelRank(level: TrustLevel): number {
  return RANK[level]
}

export function isTrustLevel(v: unknown): v is TrustLevel {
  return v === 'L0' || v === 'L1' || v === 'L2' || v === 'L3'
}

/** The lower of two levels: used when a token and a local manifest disagree. */
export function minLevel(a: TrustLevel, b: TrustLevel): TrustLevel {
  return RANK[a] <= RANK[b] ? a : b
}

/** May an agent at `level` perform `operation` on a tool (scope checks come separately)? */
export function permitsOperation(level: TrustLevel, operation: Operation): boolean {
  if (operation === 'read') return RANK[level] >= 1
  return RANK[level] >= 2
}

/** May an agent at `level` receive capability tokens at all? */
export function mayHoldTokens(level: TrustLevel): boolean {
  return RANK[level] >= 1
}

/** May an agent at `level` spawn sub-agents? */
export function maySpawn(level: TrustLevel): boolean {
  return level === 'L3'
}

/** May an agent at `level` re-delegate a capability (given depth >= 1)? */
export function mayRedelegate(level: TrustLevel): boolean {
  return RANK[level] >= 2
}

/** Which HTTP methods may an agent at `level` use for egress (undefined = any)? */
export function egressMethods(level: TrustLevel): readonly string[] | 'any' | 'none' {
  if (level === 'L0') return 'none'
  if (level === 'L1') return ['GET', 'HEAD']
  return 'any'
}
