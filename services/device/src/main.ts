import { repoPath, runService, ServiceSpec } from '../../runtime/src';

/** The device service: registry, credentials, status, twin, commands. */
export const deviceService: ServiceSpec<{}> = {
  name: 'device',
  env: {},
  defaultPort: 50052,
  uses: { postgres: { migrations: repoPath('services', 'device', 'migrations') }, redis: true, nats: true },
  async build() {
    return { services: [] };
  },
};

if (require.main === module) runService(deviceService);
