# One image for every Node process of iot-mesh — signing, device, monitoring,
# the gateway with the dashboard, the simulator; the Helm chart's `command`
# picks which. Build: docker build -t iot-mesh:0.1.0 .
# (Not built by CI: the machines it runs on have no Docker engine.)

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY . .
RUN npm ci --no-audit --no-fund
# generate (proto → gen/), type check, the dashboard bundle → gateway/web/dist
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY . .
# TypeScript runs through tsx (a runtime dependency); workspaces are linked by npm ci.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# Read at run time through repoPath(): the descriptor set and the dashboard.
COPY --from=build /app/gen ./gen
COPY --from=build /app/gateway/web/dist ./gateway/web/dist
USER node
EXPOSE 50051 50052 50053 8080 8081 9464
CMD ["node", "--import", "tsx", "--import", "./packages/runtime/src/observability/tracing-entry.ts", "services/signing/src/main.ts"]
