/*
 * The device service refuses to start without NATS auth (issue 13): without
 * the DEVICE_NATS_* variables every NATS client could act as any device of
 * any tenant, so that takes an explicit DEVICE_ALLOW_INSECURE_NATS=true.
 */
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';
import { startTestService } from '../../../testing/services';
import { deviceService } from '../src/main';

jest.setTimeout(60_000);

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase('iot_device');
});
afterAll(async () => {
  await db?.drop();
});

test('without DEVICE_NATS_* it refuses to start and says how to fix it', async () => {
  // The shared test NATS server (testServiceEnv's NATS_URL) runs without auth.
  await expect(startTestService(deviceService, { DATABASE_URL: db.url })).rejects.toThrow(
    /refusing to start without NATS auth: set DEVICE_NATS_OPERATOR_SIGNING_SEED.*or set DEVICE_ALLOW_INSECURE_NATS=true/,
  );
});

test('with DEVICE_ALLOW_INSECURE_NATS=true it starts, credentials disabled', async () => {
  const service = await startTestService(deviceService, { DATABASE_URL: db.url, DEVICE_ALLOW_INSECURE_NATS: 'true' });
  await service.stop();
});

test('a half-configured NATS auth is refused even with the flag', async () => {
  await expect(startTestService(deviceService, { DATABASE_URL: db.url, DEVICE_ALLOW_INSECURE_NATS: 'true', DEVICE_NATS_TENANT_KEY_SECRET: 'x'.repeat(32) })).rejects.toThrow(/must be set together/);
});
