import fs from 'node:fs';
import { connect, credsAuthenticator, NatsConnection } from 'nats';
import { createLogger, DEVICE_DIRECTORY_BUCKET, GROUP_DIRECTORY_BUCKET, loadConfig, withJetStreamStartupPatience } from '@iot-mesh/runtime';
import { TestNatsCluster } from '../../../testing/nats-cluster';
import { deviceEnv } from '../src/config';
import { DeviceDirectoryPublisher } from '../src/events/device-directory-publisher';
import { GroupDirectoryPublisher } from '../src/events/group-directory-publisher';

jest.setTimeout(120_000);

let cluster: TestNatsCluster;
let service: NatsConnection;

beforeAll(async () => {
  cluster = await TestNatsCluster.start({});
  service = await connect({ servers: cluster.urls.split(','), authenticator: credsAuthenticator(fs.readFileSync(cluster.serviceCredsFile)) });
});
afterAll(async () => {
  await service?.close();
  await cluster?.stop();
});

test('on a three-node NATS cluster the device service creates the directory buckets with DEVICE_DIRECTORY_REPLICAS replicas (the chart sets 3)', async () => {
  const config = loadConfig(deviceEnv, { DEVICE_DIRECTORY_REPLICAS: '3' });
  const log = createLogger('directory-replicas-test', 'warn');
  // As main.ts opens them; a fresh cluster may need a moment before the account's JetStream answers.
  await withJetStreamStartupPatience(() => DeviceDirectoryPublisher.open(service, log, { replicas: config.DEVICE_DIRECTORY_REPLICAS }));
  await withJetStreamStartupPatience(() => GroupDirectoryPublisher.open(service, log, config.DEVICE_DIRECTORY_REPLICAS));
  const jsm = await service.jetstreamManager();
  for (const bucket of [DEVICE_DIRECTORY_BUCKET, GROUP_DIRECTORY_BUCKET]) {
    const info = await jsm.streams.info(`KV_${bucket}`);
    expect({ bucket, replicas: info.config.num_replicas }).toEqual({ bucket, replicas: 3 });
  }
  // The default stays one replica (a single server).
  expect(loadConfig(deviceEnv, {}).DEVICE_DIRECTORY_REPLICAS).toBe(1);
});
