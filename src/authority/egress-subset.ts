/**
 * Is a child's egress declaration within its parent's? One place for destination
 * semantics: this delegates to the egress parser (`src/egress/destination.ts`, pure and
 * dependency-free): same scheme and port, the host exact or under a wildcard on a label
 * boundary, `internal` only under an `internal` parent, and any unparsable entry not covered.
 */
export { egressCovered } from '../egress/destination.js'
