# One image for every example service; the compose file picks the script per service.
#
#   docker build -f examples/docker/services.Dockerfile -t mailroom-examples .   (from the repository root)
#
# Not built on the machine these examples were written on (no Docker engine there).
FROM node:24-alpine
WORKDIR /app
RUN corepack enable
COPY . .
RUN pnpm install --frozen-lockfile && pnpm build
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080
EXPOSE 8080
USER node
CMD ["node", "examples/users-orders/src/users-service.mjs"]
