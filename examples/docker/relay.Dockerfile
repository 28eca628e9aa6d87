# The outbox relay as a sidecar image: `mailroom relay`, configured by MAILROOM_* variables
# (`mailroom relay --help` lists them), /healthz /readyz /metrics on :9464, SIGTERM drains.
#
#   docker build -f examples/docker/relay.Dockerfile -t mailroom-relay .     (from the repository root)
#   docker run --rm -e MAILROOM_DATABASE_URL=… -e MAILROOM_AMQP_URL=… -p 9464:9464 mailroom-relay
#
# Not built on the machine these examples were written on (no Docker engine there); the
# `pnpm deploy` step it relies on was run there and its output ran `mailroom doctor` fine.
FROM node:24-alpine AS build
WORKDIR /src
RUN corepack enable
COPY . .
RUN pnpm install --frozen-lockfile && pnpm build
# A self-contained copy of the CLI with its production dependencies (workspace packages included).
RUN pnpm --filter mailroom deploy --prod --legacy /out

FROM node:24-alpine
WORKDIR /app
COPY --from=build /out .
ENV NODE_ENV=production MAILROOM_HTTP_PORT=9464
EXPOSE 9464
USER node
HEALTHCHECK --interval=10s --timeout=3s CMD wget -qO- http://127.0.0.1:9464/healthz >/dev/null || exit 1
# Exec form: node is PID 1 and gets SIGTERM itself (the relay drains and exits 0).
ENTRYPOINT ["node", "dist/main.js"]
CMD ["relay"]
