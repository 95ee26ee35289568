import { repoPath, runService, ServiceSpec } from '../../runtime/src';

/** The signing service: tenants, users, roles, tokens, API keys. */
export const signingService: ServiceSpec<{}> = {
  name: 'signing',
  env: {},
  defaultPort: 50051,
  uses: { postgres: { migrations: repoPath('services', 'signing', 'migrations') }, redis: true, nats: true },
  async build() {
    return { services: [] };
  },
};

if (require.main === module) runService(signingService);
