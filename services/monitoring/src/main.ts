import { repoPath, runService, ServiceSpec } from '../../runtime/src';

/** The monitoring service: telemetry ingest, storage, history, live streams, alerts. */
export const monitoringService: ServiceSpec<{}> = {
  name: 'monitoring',
  env: {},
  defaultPort: 50053,
  uses: { postgres: { migrations: repoPath('services', 'monitoring', 'migrations') }, redis: true, nats: true },
  async build() {
    return { services: [] };
  },
};

if (require.main === module) runService(monitoringService);
