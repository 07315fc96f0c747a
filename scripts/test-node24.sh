#!/usr/bin/env bash
# Runs `npm test` on Node 24 (the Docker image's runtime) in this checkout, whose node_modules were
# installed by the machine's Node 20. Of the native modules only better-sqlite3's is tied to one
# Node ABI (the rest use N-API), so a build of it for Node 24 is cached beside Node 24 and swapped
# in for the run; the Node 20 one goes back on exit, failure and Ctrl-C included.
# While it runs, this checkout's node_modules is Node 24's: run no Node 20 tests here meanwhile.
#   usage: scripts/test-node24.sh    (also: npm run test:node24)
set -euo pipefail
cd "$(dirname "$0")/.."
node24="$(bash scripts/node24.sh)"
addon=node_modules/better-sqlite3/build/Release/better_sqlite3.node
saved="$addon.node20"
tmp=""
restore() {
  if [ -f "$saved" ]; then mv -f "$saved" "$addon"; fi
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}
# A run killed outright (SIGKILL) could not restore: finish its job first.
restore
trap restore EXIT

version="$(node -p 'require("./node_modules/better-sqlite3/package.json").version')"
built="$node24/addons/better_sqlite3-$version.node"
if [ ! -f "$built" ]; then
  echo "building better-sqlite3 $version for Node $("$node24/bin/node" --version) (about 2 minutes on 2 cores)"
  tmp="$(mktemp -d)"
  cp -r node_modules/better-sqlite3/. "$tmp"
  rm -rf "$tmp/build"
  (cd "$tmp" && PATH="$node24/bin:$PATH" npm_config_nodedir="$node24" JOBS="${JOBS:-max}" npm run --silent build-release) \
    >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
  mkdir -p "$node24/addons"
  cp "$tmp/build/Release/better_sqlite3.node" "$built.part"
  mv "$built.part" "$built"
fi

# Renames, not copies over: a process that has the Node 20 module loaded keeps its file intact.
mv "$addon" "$saved"
cp "$built" "$addon.part"
mv "$addon.part" "$addon"

export PATH="$node24/bin:$PATH"
echo "npm test on Node $(node --version) ($(command -v node))"
npm test
