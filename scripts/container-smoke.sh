#!/usr/bin/env bash
# Performs the Dockerfile's build and runtime steps without Docker, in a clean temporary copy of
# the repository, then starts the result against a loopback fake Discord, waits for /healthz to
# answer 200, stops it with SIGTERM and reports the install size. Every step runs on the image's
# Node major, from scripts/node24.sh (node-gyp builds better-sqlite3 against its headers).
#   usage: [LLAMA_BUILD=native] scripts/container-smoke.sh [cpu|cuda|vulkan]
set -euo pipefail
gpu="${1:-cpu}"
llama_build="${LLAMA_BUILD:-prebuilt}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'kill "${friend_pid:-}" "${fakes_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
say() { printf '\n== %s\n' "$*"; }

image="$(sed -n 's/^ARG NODE_IMAGE=//p' "$repo/Dockerfile")"
node_dir="$(bash "$repo/scripts/node24.sh")"
export PATH="$node_dir/bin:$PATH" npm_config_nodedir="$node_dir"
major="$(node -p 'process.versions.node.split(".")[0]')"
case "$image" in
  "node:$major-"*) ;;
  *) echo "FAIL: the Dockerfile's $image is not Node $major, which this script runs on"; exit 1 ;;
esac

say "copy the repository's tracked files (what the Docker build context holds)"
mkdir -p "$work/context"
git -C "$repo" ls-files -z --cached --others --exclude-standard | (cd "$repo" && xargs -0 cp --parents -t "$work/context")

say "build stage (Dockerfile: FROM $image AS build), on Node $(node --version)"
mkdir -p "$work/build"
cd "$work/build"
cp "$work/context/package.json" "$work/context/package-lock.json" .
npm ci --no-audit --no-fund
cp "$work/context/tsconfig.json" "$work/context/tsconfig.build.json" .
cp -r "$work/context/src" ./src
npm run build
if [ "$llama_build" = native ]; then
  mkdir -p scripts && cp "$work/context/scripts/build-llama.ts" scripts/
  npm run build:llama -- --slim || echo "native llama.cpp build failed: the image runs the prebuilt binary"
fi
npm prune --omit=dev --no-audit --no-fund
mkdir -p scripts && cp "$work/context/scripts/prune-gpu-binaries.sh" scripts/
sh scripts/prune-gpu-binaries.sh node_modules "$gpu"

say "runtime stage (Dockerfile: FROM $image AS runtime), on Node $(node --version)"
mkdir -p "$work/app"
cd "$work/app"
cp -r "$work/build/node_modules" ./node_modules
cp -r "$work/build/dist" ./dist
cp "$work/context/package.json" .
cp -r "$work/context/config" ./config
cp -r "$work/context/bin" ./bin
mkdir -p models adapters data

say "start it against a fake Discord and check /healthz"
(cd "$repo" && exec node --import tsx scripts/smoke-fakes.ts >"$work/fakes.json") &
fakes_pid=$!
for _ in $(seq 100); do [ -s "$work/fakes.json" ] && break; sleep 0.1; done
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
env -i PATH="$PATH" HOME="$work" NODE_ENV=production FRIEND_DB_PATH="$work/app/data/friend.db" \
  FRIEND_HTTP_PORT="$port" FRIEND_HTTP_HOST=127.0.0.1 LOG_LEVEL=info LLAMA_BUILD="$llama_build" \
  $(node -e 'const e=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));for(const[k,v]of Object.entries(e))console.log(k+"="+v)' "$work/fakes.json") \
  node dist/main.js >"$work/friend.log" 2>&1 &
friend_pid=$!
healthy=""
for _ in $(seq 120); do
  if node -e "fetch('http://127.0.0.1:$port/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"; then healthy=yes; break; fi
  sleep 0.5
done
kill -TERM "$friend_pid"
status=0
wait "$friend_pid" || status=$?
friend_pid=""
if [ -z "$healthy" ]; then echo "FAIL: /healthz never answered 200"; cat "$work/friend.log"; exit 1; fi
if [ "$status" -ne 0 ]; then echo "FAIL: exit status $status after SIGTERM"; cat "$work/friend.log"; exit 1; fi
echo "ok: /healthz answered 200, and SIGTERM gave exit status 0"

say "install size ($gpu)"
du -sh "$work/app/node_modules" "$work/app"
du -sh "$work/app/node_modules/@node-llama-cpp"/* 2>/dev/null || true
