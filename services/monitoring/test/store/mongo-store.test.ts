import crypto from 'node:crypto';
import { MongoClient } from 'mongodb';
import { MongoTelemetryStore } from '../../src/store/mongo-store';
import { describeTelemetryStoreContract } from './contract';

/**
 * The same contract suite against MongoDB, wherever MONGODB_URL points at a
 * server (`mongodb://127.0.0.1:27017`). No MongoDB can be installed on the CI
 * machines, so there it is reported as skipped, by name.
 */
const url = process.env.MONGODB_URL;

if (url) {
  describeTelemetryStoreContract('MongoDB', async () => {
    const client = await MongoClient.connect(url, { ignoreUndefined: true });
    const db = client.db(`iot_test_${crypto.randomBytes(6).toString('hex')}`);
    const store = new MongoTelemetryStore(db);
    await store.init();
    return {
      store,
      async close() {
        await db.dropDatabase().catch(() => undefined);
        await client.close();
      },
    };
  });
} else {
  test.skip('TelemetryStore contract: MongoDB — SKIPPED because MONGODB_URL is not set', () => undefined);
}
