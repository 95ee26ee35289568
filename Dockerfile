# One image for every Node process of iot-mesh — signing, device, monitoring,
# the gateway with the dashboard, the simulator; the Helm chart's `command`
# picks which. Build: docker build -t iot-mesh:0.1.0 .
# (Not built by CI: the machines it runs on have no Docker engine.)

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# generate (proto → gen/), tsc → dist/, the dashboard bundle → gateway/web/dist
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Read at run time through repoPath(): the descriptor set, the dashboard, the migrations.
COPY --from=build /app/gen/iot.binpb ./gen/iot.binpb
COPY --from=build /app/gateway/web/dist ./gateway/web/dist
COPY services/signing/migrations ./services/signing/migrations
COPY services/device/migrations ./services/device/migrations
COPY services/monitoring/migrations ./services/monitoring/migrations
USER node
EXPOSE 50051 50052 50053 8080 8081 9464
CMD ["node", "--require", "dist/services/runtime/src/observability/tracing-entry.js", "dist/services/signing/src/main.js"]
