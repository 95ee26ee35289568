import { countCacheLookups, createAuthMiddleware, pingNats, repoPath, runService, ServiceSpec } from '@iot-mesh/runtime';
import { commandApi } from './api/commands';
import { credentialApi } from './api/credentials';
import { deviceTypeApi } from './api/device-types';
import { deviceApi } from './api/devices';
import { campaignApi, firmwareApi } from './api/firmware';
import { groupApi } from './api/groups';
import { jobApi } from './api/jobs';
import { provisioningApi } from './api/provisioning';
import { sessionApi } from './api/sessions';
import { twinApi } from './api/twins';
import { deviceEnv } from './config';
import { Commands } from './domain/commands';
import { credentialPolicy, Credentials } from './domain/credentials';
import { DeviceTypes } from './domain/device-types';
import { DeviceChanges, DeviceRegistry } from './domain/devices';
import { Campaigns, Firmware } from './domain/firmware';
import { FirmwareImages } from './domain/firmware-images';
import { Groups } from './domain/groups';
import { JobRunner } from './domain/job-runner';
import { Jobs } from './domain/jobs';
import { Presence } from './domain/presence';
import { Provisioning } from './domain/provisioning';
import { Twins } from './domain/twins';
import { AccountAuthority } from './events/account-authority';
import { NatsCommandChannel } from './events/command-channel';
import { ConnectEvents } from './events/connect-events';
import { NatsDesiredStateChannel } from './events/desired-state';
import { DeviceDirectoryPublisher } from './events/device-directory-publisher';
import { GroupDirectoryPublisher } from './events/group-directory-publisher';
import { DeviceEvents } from './events/device-events';
import { StateReports } from './events/state-reports';
import { countClaims, countCredentialOperations } from './metrics';
import { PgAccountStore } from './store/account-store';
import { PgCommandStore } from './store/command-store';
import { DeviceCache } from './store/device-cache';
import { PgDeviceStore } from './store/device-store';
import { PgDeviceTypeStore } from './store/device-type-store';
import { PgFirmwareStore } from './store/firmware-store';
import { PgGroupStore } from './store/group-store';
import { PgJobStore } from './store/job-store';
import { PgProvisioningStore } from './store/provisioning-store';
import { PgSessionStore } from './store/session-store';
import { PgTwinStore } from './store/twin-store';

export { deviceEnv } from './config';

/** The device service: registry, credentials, status, twin, commands, device types, groups, self-provisioning, jobs, firmware campaigns. */
export const deviceService: ServiceSpec<typeof deviceEnv> = {
  name: 'device',
  env: deviceEnv,
  defaultPort: 50052,
  uses: { postgres: { migrations: repoPath('services', 'device', 'migrations') }, redis: true, nats: true },
  async build({ config, log, pool, redis, nats }) {
    // The runtime parsed NATS_URL (it is not part of this service's own shape).
    const natsUrl = (config as unknown as { NATS_URL: string }).NATS_URL;

    // Storage.
    const deviceLimits = { maxDevicesPerTenant: config.DEVICE_MAX_PER_TENANT };
    const store = new PgDeviceStore(pool, deviceLimits);
    const typeStore = new PgDeviceTypeStore(pool);
    const groupStore = new PgGroupStore(pool);
    const cache = countCacheLookups(new DeviceCache(redis, log.child({ component: 'cache' }), config.DEVICE_CACHE_TTL_MS), 'get', 'device');

    // The message plane.
    const directory = await DeviceDirectoryPublisher.open(nats, log.child({ component: 'directory' }), { replicas: config.DEVICE_DIRECTORY_REPLICAS, types: typeStore });
    const events = new DeviceEvents(nats, log);
    const accountStore = new PgAccountStore(pool);
    const { system, authority } = (await AccountAuthority.open(config, natsUrl, accountStore, log)) ?? {};
    const desired = new NatsDesiredStateChannel(nats, log.child({ component: 'twin' }));
    const commandChannel = new NatsCommandChannel(nats, log.child({ component: 'commands' }));

    // The domain, with its decorators.
    const changes = new DeviceChanges(cache, directory, events);
    const credentials = countCredentialOperations(
      new Credentials({
        store,
        changes,
        authority,
        urls: { nats: config.DEVICE_NATS_PUBLIC_URL ?? natsUrl.split(',')[0].trim(), mqtt: config.DEVICE_MQTT_PUBLIC_URL },
        policy: credentialPolicy(config),
        counts: accountStore,
      }),
    );
    const types = new DeviceTypes({ store: typeStore, devices: store, changes });
    const registry = new DeviceRegistry({ store, cache, changes, credentials, types, groups: groupStore });
    const twins = new Twins(new PgTwinStore(pool), registry, desired, types);
    const commands = new Commands(new PgCommandStore(pool), registry, commandChannel, types);
    const groupDirectory = await GroupDirectoryPublisher.open(nats, log.child({ component: 'group-directory' }), config.DEVICE_DIRECTORY_REPLICAS);
    const groups = new Groups(groupStore, types, registry, groupDirectory);
    const provisioning = countClaims(new Provisioning({ store: new PgProvisioningStore(pool, deviceLimits), types, registry, changes, credentials }));
    const jobStore = new PgJobStore(pool);
    const jobRunner = new JobRunner({ store: jobStore, commands, twins, log: log.child({ component: 'jobs' }) });
    const jobs = new Jobs(jobStore, registry, groups, types, () => jobRunner.wake());
    const firmwareStore = new PgFirmwareStore(pool);
    const firmware = new Firmware(firmwareStore, types);
    const firmwareImages = new FirmwareImages({
      store: firmwareStore,
      limits: { maxImageBytes: config.DEVICE_FIRMWARE_MAX_IMAGE_BYTES, maxTenantBytes: config.DEVICE_FIRMWARE_MAX_TENANT_BYTES },
      downloadBaseUrl: config.DEVICE_FIRMWARE_DOWNLOAD_URL,
      credentials: {
        // A tenant id that cannot be a subject token has no account, so no device credential.
        signerOf: (tenantId) => {
          try {
            return authority?.keysOf(tenantId).signer.publicKey;
          } catch {
            return undefined;
          }
        },
        device: (tenantId, id) => store.get(tenantId, id),
      },
    });
    const campaigns = new Campaigns({ store: firmwareStore, jobStore, firmware, jobs, twins, log: log.child({ component: 'campaigns' }), onJobsChanged: () => jobRunner.wake() });
    // A device that connects gets its desired state again and its queued job steps.
    const onConnect = { connected: (devices: { tenantId: string; deviceId: string }[]) => (jobRunner.connected(), twins.connected(devices)) };
    const presence = new Presence({ store, changes, twins: onConnect, sessions: new PgSessionStore(pool), log: log.child({ component: 'presence' }) });

    // What the service consumes.
    await commandChannel.start();
    const connectEvents = new ConnectEvents({ presence, nc: nats, system, log: log.child({ component: 'presence' }) });
    await connectEvents.start();
    presence.start();
    // A stored report of an install's outcome finishes the device's campaign step.
    const stateReports = new StateReports(nats, campaigns.reportsOf(twins), log);
    stateReports.start();
    await directory.resync(store.scanAll(500));
    await groupDirectory.resync(groupStore.scanAll(500));
    jobRunner.start();
    campaigns.start();

    // The shared JWKS/API-key copies are per signing deployment (tests run many signing instances against one Redis).
    const auth = createAuthMiddleware({ signingAddress: config.SIGNING_ADDRESS, redis, log });
    return {
      services: [
        deviceApi({ registry, events }),
        credentialApi(credentials),
        twinApi(twins),
        commandApi(commands),
        deviceTypeApi(types),
        groupApi(groups),
        jobApi(jobs),
        firmwareApi(firmware, firmwareImages),
        campaignApi(campaigns),
        provisioningApi(provisioning),
        sessionApi(registry, presence),
      ],
      middlewares: [auth],
      checks: system ? [{ name: 'nats-system', check: () => pingNats(system!) }] : [],
      async stop() {
        // Before the command channel: steps under way get their answers recorded.
        await campaigns.stop();
        await jobRunner.stop();
        stateReports.stop();
        commandChannel.stop();
        desired.stop();
        authority?.stop();
        connectEvents.stop();
        await presence.stop();
        auth.close();
        if (system && !system.isClosed()) await system.drain().catch(() => undefined);
      },
    };
  },
};

if (require.main === module) runService(deviceService);
