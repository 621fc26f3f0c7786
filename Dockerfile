# syntax=docker/dockerfile:1
# One image per Meshwork service, all from this workspace:
#   docker build --build-arg SERVICE=users -t meshwork/users .
# The build stage takes no argument, so every service's image shares it (built once).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY . .
RUN npm ci --no-audit --no-fund \
 && TURBO_TELEMETRY_DISABLED=1 npx turbo run build --filter="./apps/*" --output-logs=errors-only \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
# A directory under apps/ (users, inventory, payments, orders, notifications, gateway).
ARG SERVICE
ENV NODE_ENV=production \
    SERVICE=${SERVICE} \
    HOST=0.0.0.0
WORKDIR /app
COPY --from=build --chown=node:node /app /app
USER node
# SIGTERM reaches node itself (exec): the service drains and deregisters before it exits.
CMD ["sh", "-c", "exec node apps/${SERVICE}/dist/main.js"]
