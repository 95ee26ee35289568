import { TestNatsServer } from '../../../testing/nats-server';
import { startWorld } from './harness';

jest.setTimeout(60_000);

async function connections(server: TestNatsServer): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${server.monitorPort}/connz`);
  return ((await res.json()) as { num_connections: number }).num_connections;
}

test('a world whose start-up fails partway stops what it had started', async () => {
  const nats = await TestNatsServer.start({ jetstream: true });
  try {
    // The replica refuses its configuration after the database and the NATS connection exist.
    await expect(startWorld({ TELEMETRY_STORE: 'bogus' }, { natsServer: nats })).rejects.toThrow(/TELEMETRY_STORE/);
    // Its NATS connection (and the replicas', had any started) is closed again.
    expect(await connections(nats)).toBe(0);
  } finally {
    await nats.stop();
  }
});
