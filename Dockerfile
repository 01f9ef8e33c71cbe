# syntax=docker/dockerfile:1
# konnectivity-ts: one image with both binaries (server and agent).
#
# Entrypoints (see docs/migration-from-upstream.md):
#   /proxy-server   -> bin/konnectivity-server  (same flags as registry.k8s.io/kas-network-proxy/proxy-server)
#   /proxy-agent    -> bin/konnectivity-agent   (same flags as registry.k8s.io/kas-network-proxy/proxy-agent)
#   /konnectivity   -> bin/konnectivity         (client / quickstart tool)
# Upstream manifests that say `command: ["/proxy-server"]` or
# `command: ["/proxy-agent"]` work unchanged; only `image:` changes.
# The default ENTRYPOINT is /proxy-server, so `args:`-only manifests must
# set `command:` for the agent (upstream ships two images instead).
#
# Runtime: uid/gid 65532 (as distroless "nonroot"), no writes to the root
# filesystem (readOnlyRootFilesystem: true works); the server writes only its
# --uds-name socket, which lives on an emptyDir.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: full install, compile TypeScript to dist/ ----------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: no lifecycle scripts (the `prepare` build runs explicitly
# below; the `node` devDependency's installer is not needed, the base image has Node).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY proto ./proto
RUN npm run build

# ---- production dependencies only -------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# ---- runtime ------------------------------------------------------------------
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    HOME=/tmp
WORKDIR /app
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY bin ./bin
# Upstream-compatible entrypoint paths. bin/* resolve dist/ relative to their
# real path, so symlinks are enough (Node follows the main module's symlink).
RUN chmod 0755 bin/konnectivity-server bin/konnectivity-agent bin/konnectivity \
 && ln -s /app/bin/konnectivity-server /proxy-server \
 && ln -s /app/bin/konnectivity-agent /proxy-agent \
 && ln -s /app/bin/konnectivity /konnectivity \
 && mkdir -p /run/konnectivity /etc/kubernetes/konnectivity-server \
 && chown 65532:65532 /run/konnectivity /etc/kubernetes/konnectivity-server
USER 65532:65532
# 8090 frontend (TCP mode), 8091 agent gRPC, 8092 server health, 8095 server admin,
# 8093 agent health, 8094 agent admin (upstream defaults).
EXPOSE 8090 8091 8092 8093 8094 8095
ENTRYPOINT ["/proxy-server"]
