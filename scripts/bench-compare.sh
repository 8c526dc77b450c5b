#!/usr/bin/env bash
# Interleaved before/after benchmark: `scripts/bench-compare.sh <rev> [rounds] [sections...]`
# runs `bench/run.ts <section>` for <rev> (in a temporary worktree sharing this checkout's
# node_modules) and for the working tree, alternating, so that the load of a shared machine
# falls on both sides alike. Compare the ratios to each side's floor, not absolute times.
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:?usage: scripts/bench-compare.sh <rev> [rounds] [sections...]}"
rounds="${2:-2}"
shift $(( $# >= 2 ? 2 : 1 ))
sections=("$@")
[ "${#sections[@]}" -gt 0 ] || sections=(kernel redis egress langchain)
before="$(mktemp -d)"
trap 'git worktree remove --force "$before" >/dev/null 2>&1 || rm -rf "$before"' EXIT
git worktree add --quiet --detach "$before" "$rev"
ln -s "$PWD/node_modules" "$before/node_modules"
for section in "${sections[@]}"; do
  for round in $(seq 1 "$rounds"); do
    for side in "$before" "$PWD"; do
      label=$([ "$side" = "$PWD" ] && echo "working tree" || echo "$rev")
      echo "=== $section, round $round: $label"
      (cd "$side" && npx tsx --conditions=agent-trust-source bench/run.ts "$section")
    done
  done
done
