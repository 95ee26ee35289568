/*
 * A simulated device over NATS signs in as a real one does with a credential
 * the device service issues (issue 13): the user JWT with the nonce signed by
 * its seed; the JWT is not bearer, so nothing else logs it in.
 */
import { connect, credsAuthenticator, NatsConnection } from 'nats';
import { deviceSubject } from '@iot-mesh/runtime';
import { mintDeviceUser } from '@iot-mesh/nats-auth';
import { OperatorNats, startOperatorNats } from '../../testing/nats-operator';
import { createLink, DeviceLink } from '../src/links';

let nats: OperatorNats;
let link: DeviceLink | undefined;
let platform: NatsConnection | undefined;

beforeAll(async () => {
  nats = await startOperatorNats();
});

afterAll(async () => {
  await link?.close();
  await platform?.close();
  await nats?.stop();
});

test('a NATS link connects with the credential and its seed, and its telemetry reaches the platform account', async () => {
  const keys = await nats.pushTenantAccount('sim');
  const credential = mintDeviceUser(keys, { deviceId: 'sim-1', kind: 'nats', expireTime: new Date(Date.now() + 3_600_000), bearer: false });
  const subject = deviceSubject('sim', 'sim-1', 'tel');
  platform = await connect({ servers: nats.server.url, authenticator: credsAuthenticator(new TextEncoder().encode(nats.setup.serviceCreds)) });
  const received = new Promise<string>((resolve) => platform!.subscribe(subject, { max: 1, callback: (_err, msg) => resolve(Buffer.from(msg.data).toString()) }));
  await platform.flush();

  link = createLink({ transport: 'nats', url: nats.server.url, clientId: 'sim-1', token: credential.token, seed: credential.seed });
  await link.connect();
  expect(link.connected).toBe(true);
  await link.publish(subject, Buffer.from('hello'), { msgId: 'm-1' });
  expect(await received).toBe('hello');
});
