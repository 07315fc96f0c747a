# Friend: a self-hosted Discord chatbot that talks like a Friends character.
#   docker build -t friend .                      CPU image (llama.cpp CPU binary only)
#   docker build -t friend:cuda --build-arg GPU=cuda .   keeps the CUDA binaries; run with --gpus all
#   docker build -t friend --build-arg LLAMA_BUILD=native .   compiles llama.cpp for the build host's CPU (docs/LOCAL.md)
# scripts/container-smoke.sh performs these same steps without Docker; keep the two in step.

ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: compile TypeScript, then keep production dependencies only ---
FROM ${NODE_IMAGE} AS build
ARG GPU=cpu
WORKDIR /app
# better-sqlite3 compiles when no prebuilt binary matches.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build
# LLAMA_BUILD=native: llama.cpp compiled for this CPU by node-llama-cpp from its bundled source
# (minutes, no network). If it fails the image keeps the prebuilt binary, and Friend logs why.
ARG LLAMA_BUILD=prebuilt
COPY scripts/build-llama.ts ./scripts/
RUN if [ "$LLAMA_BUILD" = native ]; then \
      apt-get update && apt-get install -y --no-install-recommends cmake git && rm -rf /var/lib/apt/lists/* && \
      { npm run build:llama -- --slim || echo "native llama.cpp build failed: the image runs the prebuilt binary"; }; \
    fi
RUN npm prune --omit=dev
COPY scripts/prune-gpu-binaries.sh ./scripts/
RUN sh scripts/prune-gpu-binaries.sh node_modules "$GPU"

# --- runtime: Node, tini, the build output, nothing else ---
FROM ${NODE_IMAGE} AS runtime
ARG LLAMA_BUILD=prebuilt
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production \
    LLAMA_BUILD=${LLAMA_BUILD} \
    FRIEND_DB_PATH=/app/data/friend.db \
    FRIEND_HTTP_PORT=8080 \
    FRIEND_HTTP_HOST=127.0.0.1
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
COPY bin ./bin
# models/ and adapters/ are where downloads land, so the node user must own them too.
RUN mkdir -p models adapters data && chown node:node models adapters data
USER node
VOLUME ["/app/models", "/app/adapters", "/app/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+process.env.FRIEND_HTTP_PORT+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# tini is PID 1 and forwards SIGTERM to node, which exits 0 after a clean stop.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/main.js"]
