import { PostgresTelemetryStore } from '../../src/store/postgres-store';
import { migratedDatabase } from '../helpers';
import { describeTelemetryStoreContract } from './contract';

describeTelemetryStoreContract('PostgreSQL', async () => {
  const { pool, close } = await migratedDatabase();
  return { store: new PostgresTelemetryStore(pool), close };
});
