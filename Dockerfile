# syntax=docker/dockerfile:1
# One image per Meshwork service, all from this one template:
#   docker build --build-arg SERVICE=users --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t meshwork/users .
# The first stage prunes the workspace to the service and the libraries it depends on
# (`turbo prune --docker`), so an image holds no other app's source and a change to another
# service leaves this one's layers cached. tools/meshctl/src/images.test.ts runs the same prune
# for every service and checks what it keeps.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS prune
# A directory under apps/ (users, inventory, payments, orders, notifications, gateway, ...).
ARG SERVICE
WORKDIR /src
RUN npm install --global turbo@2.11.11 --no-audit --no-fund
COPY . .
RUN test -n "${SERVICE}" && TURBO_TELEMETRY_DISABLED=1 turbo prune "@meshwork/${SERVICE}" --docker --out-dir /pruned

FROM ${NODE_IMAGE} AS build
ARG SERVICE
WORKDIR /app
# Dependencies first (the pruned package.json files and lockfile): cached until they change.
COPY --from=prune /pruned/json/ ./
# The root's postinstall applies these to node_modules (patch-package): postgres.js 3.4.10 must not
# crash a service when its server goes away (porsager/postgres#1154, #1208).
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY --from=prune /pruned/full/ ./
# The shared compiler settings and the contracts' sources (build runs `generate`, which checks
# that the committed generated code is what the protos give).
COPY tsconfig.base.json buf.yaml buf.gen.yaml ./
COPY proto ./proto
COPY third_party ./third_party
RUN TURBO_TELEMETRY_DISABLED=1 npx turbo run build --filter="@meshwork/${SERVICE}..." --output-logs=errors-only \
 && npm prune --omit=dev --no-audit --no-fund
# The Node options the service is deployed with, from its package.json's `meshwork.nodeOptions`
# (the gateway's young generation: apps/gateway/src/node-options.ts), where `meshctl up` and the
# bench read them too; the CMD puts them in front of the deployment's own NODE_OPTIONS.
RUN node -p "require('./apps/${SERVICE}/package.json').meshwork?.nodeOptions ?? ''" > node-options

FROM ${NODE_IMAGE}
ARG SERVICE
ENV NODE_ENV=production \
    SERVICE=${SERVICE} \
    HOST=0.0.0.0
WORKDIR /app
# Production dependencies only, and this service with its libraries (built).
COPY --from=build --chown=node:node /app /app
USER node
# The commit the image is built from (--build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD)):
# reported in meshwork_build_info and the registry record beside the package's version. After
# the copy, so a new commit alone rebuilds no layer with content.
ARG GIT_COMMIT=
ENV MESHWORK_BUILD_COMMIT=${GIT_COMMIT}
# grpc.health.v1 Health/Check on the service's own port (the gateway's image answers it too).
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=12 \
  CMD ["sh", "-c", "exec node libs/runtime/dist/health-probe.js 127.0.0.1:${PORT:-50051}"]
# SIGTERM reaches node itself (exec): the service drains and deregisters before it exits. A flag
# the deployment sets in NODE_OPTIONS wins over the service's own (V8 takes the last).
CMD ["sh", "-c", "export NODE_OPTIONS=\"$(cat node-options) ${NODE_OPTIONS:-}\"; exec node apps/${SERVICE}/dist/main.js"]
