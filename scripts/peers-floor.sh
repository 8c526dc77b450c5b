#!/usr/bin/env bash
# The MCP suite once on the lowest MCP SDK releases package.json's peerDependencies accept
# (the x.y.z of each "^x.y.z"), installed over the lockfile's with `npm install --no-save`:
# about 10 s of install and 2 minutes of tests on a 2-core machine. It changes node_modules:
# run it in a throwaway clone (CI) or `npm ci` afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
floors="$(node -e '
  const peers = require("./package.json").peerDependencies
  const out = []
  for (const [name, range] of Object.entries(peers)) {
    if (!name.startsWith("@modelcontextprotocol/")) continue
    const m = /^\^(\d+\.\d+\.\d+)$/.exec(range)
    if (m === null) throw new Error(`${name}: expected one ^x.y.z range, found ${range}`)
    out.push(`${name}@${m[1]}`)
  }
  console.log(out.join(" "))
')"
# shellcheck disable=SC2086
npm install --no-save --no-audit --no-fund --ignore-scripts $floors
npx tsc -p tsconfig.json --noEmit
npx vitest run test/adapters/mcp
echo "peers-floor: typecheck and test/adapters/mcp passed with $floors"
