import { Fleet } from '../../simulator/src/fleet';
import { DEFAULT_BEHAVIOUR } from '../../simulator/src/device';
(async () => {
  const ids = Array.from({ length: 100 }, (_, i) => ({ tenantId: 'tt', deviceId: `d-${i}` }));
  const fleet = new Fleet(ids, { behaviour: { ...DEFAULT_BEHAVIOUR, url: 'nats://127.0.0.1:4222', rate: 100, points: 10, encoding: 'protobuf', interactive: false, trace: process.env.TRACE === '1' } });
  await fleet.connect();
  const t = Date.now();
  fleet.start();
  for (let i = 0; i < 4; i++) { await new Promise((r) => setTimeout(r, 1000)); console.log((Date.now() - t) / 1000, fleet.stats.sent, fleet.stats.sentPoints, fleet.stats.acked); }
  await fleet.stop();
  process.exit(0);
})();
