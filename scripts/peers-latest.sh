#!/usr/bin/env bash
# An empty app installs agent-trust beside the latest published major of every peer
# dependency, without ERESOLVE (npm's peer resolution, as a user's `npm install` runs it).
# Then every subpath is imported from the packed package, on Node 22 (undici 8 needs >= 22.19).
set -euo pipefail
cd "$(dirname "$0")/.."
app="$(mktemp -d)"
trap 'rm -rf "$app"' EXIT
npm run --silent build
tarball="$(npm pack --silent --ignore-scripts --pack-destination "$app" | tail -1)"
peers="$(node -e 'const p = require("./package.json").peerDependencies; console.log(Object.keys(p).map((n) => `${n}@latest`).join(" "))')"
cd "$app"
npm init -y >/dev/null
# shellcheck disable=SC2086
npm install --no-audit --no-fund --ignore-scripts "./$tarball" $peers
npx -y node@22 --input-type=module -e '
  for (const m of ["agent-trust", "agent-trust/mcp", "agent-trust/identity", "agent-trust/egress", "agent-trust/revocation/redis", "agent-trust/authority-service", "agent-trust/langchain"]) await import(m)
  await (await import("agent-trust/identity")).createIdentityRequest({ trustDomain: "example.org", workload: { kind: "agent", id: "agent-a" } })
  console.log("peers-latest: installed and imported with", process.argv.slice(1).join(" "))
' $(node -e 'const l = require("./package-lock.json").packages; console.log(Object.keys(require("./package.json").dependencies).filter((n) => n !== "agent-trust").map((n) => n + "@" + l["node_modules/" + n].version).join(" "))')
