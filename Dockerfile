# Ironflow: one image for every role (ironflow serve --role all|api|worker).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
# ipmitool for the ipmi BMC driver, ipxe for the iPXE binaries served at /boot, redis-server for the
# single-container mode (no REDIS_URL).
RUN apt-get update && apt-get install -y --no-install-recommends ipmitool ipxe redis-server curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY content ./content
COPY templates ./templates
ENV IRONFLOW_DATA_DIR=/data NODE_ENV=production
VOLUME /data
EXPOSE 8080 69/udp
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:${IRONFLOW_PORT:-8080}/healthz || exit 1
ENTRYPOINT ["node", "bin/ironflow.js"]
CMD ["serve"]
