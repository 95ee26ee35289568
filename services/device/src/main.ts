import { z } from 'zod';
import { ALL_STATE, connectNats, countCacheLookups, createAuthMiddleware, env, parseDeviceSubject, pingNats, repoPath, runService, ServiceSpec, signingAddressEnv } from '@iot-mesh/runtime';
import { CommandService } from './commands';
import { deviceServices } from './grpc';
import { AccountAuthority } from './nats/account-authority';
import { keyPairFromSeed } from '@iot-mesh/nats-auth';
import { DeviceDirectory } from './nats/device-directory';
import { DeviceEvents } from './nats/device-events';
import { DEVICE_QUEUE, Presence } from './presence';
import { DeviceRegistry } from './service';
import { DeviceCache } from './store/device-cache';
import { PgDeviceStore } from './store/device-store';
import { TwinService } from './twin';

function seed(kind: 'O' | 'A', what: string) {
  return z
    .string()
    .optional()
    .refine((value) => {
      if (value === undefined) return true;
      try {
        keyPairFromSeed(value.trim(), kind);
        return true;
      } catch {
        return false;
      }
    }, `must be an ${what} seed (S${kind}…), as written by npm run setup:nats`);
}

/** The device service's own variables. */
export const deviceEnv = {
  ...signingAddressEnv,
  /** Operator seed: signs the account JWT re-issued with revocations. */
  DEVICE_NATS_OPERATOR_SEED: seed('O', 'operator'),
  /** Application account seed: signs device credentials. */
  DEVICE_NATS_ACCOUNT_SEED: seed('A', 'account'),
  /** Creds file of a system-account user: pushes account claims, receives connect events. */
  DEVICE_NATS_SYSTEM_CREDS: env.optional(),
  /** NATS URL put into device credentials (default: the first NATS_URL). */
  DEVICE_NATS_PUBLIC_URL: env.optional(),
  /** MQTT URL put into device credentials. */
  DEVICE_MQTT_PUBLIC_URL: env.url(['mqtt', 'mqtts', 'tcp', 'ssl', 'ws', 'wss'], 'mqtt://127.0.0.1:1883'),
  /** How long a cached device lookup lives. */
  DEVICE_CACHE_TTL_MS: env.positiveInt(60_000),
};

/** The device service: registry, credentials, status, twin, commands. */
export const deviceService: ServiceSpec<typeof deviceEnv> = {
  name: 'device',
  env: deviceEnv,
  defaultPort: 50052,
  uses: { postgres: { migrations: repoPath('services', 'device', 'migrations') }, redis: true, nats: true },
  async build({ config, log, pool, redis, nats }) {
    const credentialVars = [config.DEVICE_NATS_OPERATOR_SEED, config.DEVICE_NATS_ACCOUNT_SEED, config.DEVICE_NATS_SYSTEM_CREDS];
    if (credentialVars.some(Boolean) && !credentialVars.every(Boolean)) {
      throw new Error('DEVICE_NATS_OPERATOR_SEED, DEVICE_NATS_ACCOUNT_SEED and DEVICE_NATS_SYSTEM_CREDS must be set together');
    }
    // The runtime parsed NATS_URL (it is not part of this service's own shape).
    const natsUrl = (config as unknown as { NATS_URL: string }).NATS_URL;
    const store = new PgDeviceStore(pool);
    const cache = countCacheLookups(new DeviceCache(redis, log.child({ component: 'cache' }), config.DEVICE_CACHE_TTL_MS), 'get', 'device');
    const directory = await DeviceDirectory.open(nats, log.child({ component: 'directory' }));
    const events = new DeviceEvents(nats, log);

    let system: Awaited<ReturnType<typeof connectNats>> | undefined;
    let authority: AccountAuthority | undefined;
    if (config.DEVICE_NATS_ACCOUNT_SEED) {
      system = await connectNats(natsUrl, 'iot-device-system', log.child({ component: 'nats-system' }), { credsFile: config.DEVICE_NATS_SYSTEM_CREDS });
      const sys = system;
      authority = new AccountAuthority(
        keyPairFromSeed(config.DEVICE_NATS_OPERATOR_SEED!.trim(), 'O'),
        keyPairFromSeed(config.DEVICE_NATS_ACCOUNT_SEED.trim(), 'A'),
        sys,
        () => store.revocations(),
        log.child({ component: 'nats-account' }),
      );
      const auth = authority;
      // A restarted NATS server may have forgotten revocations: apply them on start and after every reconnect.
      await auth.sync();
      void (async () => {
        for await (const status of sys.status()) if (status.type === 'reconnect') void auth.syncInBackground();
      })();
    } else {
      log.warn('DEVICE_NATS_* are not set: device credentials and connection status are disabled');
    }

    const twin = new TwinService(store, nats, log.child({ component: 'twin' }));
    const registry = new DeviceRegistry({
      store,
      cache,
      directory,
      events,
      authority,
      urls: { nats: config.DEVICE_NATS_PUBLIC_URL ?? natsUrl.split(',')[0].trim(), mqtt: config.DEVICE_MQTT_PUBLIC_URL },
      log,
    });
    const commands = new CommandService(store, nats, log.child({ component: 'commands' }));
    await commands.start();
    const presence = new Presence({ store, cache, events, twin, nc: nats, system, accountId: authority?.accountId, log: log.child({ component: 'presence' }) });
    await presence.start();
    const stateReports = nats.subscribe(ALL_STATE, {
      queue: DEVICE_QUEUE,
      callback: (err, msg) => {
        const from = err ? undefined : parseDeviceSubject(msg.subject);
        if (from) void twin.report(from, msg.data).catch((e: Error) => log.warn({ err: e.message }, 'storing a state report failed'));
      },
    });
    await directory.resync(store.scanAll(500));

    // The shared JWKS/API-key copies are per signing deployment (tests run many signing instances against one Redis).
    const auth = createAuthMiddleware({ signingAddress: config.SIGNING_ADDRESS, redis, log });
    return {
      services: deviceServices({ registry, twin, commands, events }),
      middlewares: [auth],
      checks: system ? [{ name: 'nats-system', check: () => pingNats(system!) }] : [],
      async stop() {
        stateReports.unsubscribe();
        commands.stop();
        twin.stop();
        authority?.stop();
        await presence.stop();
        auth.close();
        if (system && !system.isClosed()) await system.drain().catch(() => undefined);
      },
    };
  },
};

if (require.main === module) runService(deviceService);
