import fs from 'node:fs';
import { Command, Option } from 'commander';
import { formatCreds, nkeyFromSeed } from '@iot-mesh/nats-auth';
import { CredentialKind } from '../../../gen/ts/iot/device/v1/credential';
import { credentialStateToJSON, Device, DeviceCredential, DeviceStatus, deviceStatusToJSON } from '../../../gen/ts/iot/device/v1/device';
import { UsageError } from '../cli-error';
import { deleteCommand, idCommand, listCommand, run } from '../command-context';
import { formatLabels, formatTime, printList, printOne, View } from '../output';
import { collectLabel, enumChoices, enumLabel, parseDuration } from '../parse';

const STATUS = enumChoices(DeviceStatus, 'DEVICE_STATUS_');
const KIND = enumChoices(CredentialKind, 'CREDENTIAL_KIND_');

/** How a device prints in lists. */
export const deviceListView: View<Device> = {
  columns: [
    { header: 'ID', value: (d) => d.id },
    { header: 'NAME', value: (d) => d.name },
    { header: 'TYPE', value: (d) => d.type },
    { header: 'STATUS', value: (d) => enumLabel(deviceStatusToJSON(d.status), 'DEVICE_STATUS_') },
    { header: 'CREDENTIAL', value: (d) => enumLabel(credentialStateToJSON(d.credentialState), 'CREDENTIAL_STATE_') },
    { header: 'LABELS', value: (d) => formatLabels(d.labels) },
    { header: 'LAST SEEN', value: (d) => formatTime(d.lastSeenTime) },
  ],
  toJson: (d) => Device.toJSON(d),
};

/** How one device prints (`devices get`, `create`, `update`). */
export const deviceView: View<Device> = {
  columns: [
    ...deviceListView.columns,
    { header: 'TENANT', value: (d) => d.tenantId },
    { header: 'LAST CONNECT', value: (d) => formatTime(d.lastConnectTime) },
    { header: 'LAST DISCONNECT', value: (d) => formatTime(d.lastDisconnectTime) },
    { header: 'CREATED', value: (d) => formatTime(d.createTime) },
    { header: 'UPDATED', value: (d) => formatTime(d.updateTime) },
  ],
  toJson: (d) => Device.toJSON(d),
};

/** How a credential prints: the token (and a NATS credential's seed) is shown this once, the server keeps no copy. */
export const credentialView: View<DeviceCredential> = {
  columns: [
    { header: 'DEVICE', value: (c) => c.deviceId },
    { header: 'TENANT', value: (c) => c.tenantId },
    { header: 'ISSUED', value: (c) => formatTime(c.issueTime) },
    { header: 'EXPIRES', value: (c) => formatTime(c.expireTime) },
    { header: 'NATS URL', value: (c) => c.natsUrl },
    { header: 'MQTT URL', value: (c) => c.mqttUrl },
    { header: 'PUBLISH', value: (c) => c.publishSubjects.join(',') },
    { header: 'SUBSCRIBE', value: (c) => c.subscribeSubjects.join(',') },
    { header: 'TOKEN', value: (c) => c.token },
    { header: 'SEED', value: (c) => c.seed },
  ],
  toJson: (c) => DeviceCredential.toJSON(c),
};

/** Writes a NATS credential as a `.creds` file (mode 0600); an MQTT credential has no seed, its token is the MQTT password. */
function writeCredsFile(file: string, credential: DeviceCredential): void {
  if (!credential.seed) throw new UsageError(`--creds: device ${credential.deviceId}'s credential is an MQTT one (no seed; its token is the MQTT password)`);
  fs.writeFileSync(file, formatCreds(credential.token, nkeyFromSeed(credential.seed, 'U')), { mode: 0o600 });
}

function labelOption(description: string): Option {
  return new Option('--label <key=value>', `${description} (repeatable)`).argParser(collectLabel);
}

/** `--expires 30d`: a time that long from now. */
function expiryOption(): Option {
  return new Option('--expires <duration>', 'lifetime of the credential, such as 30d (default: the server\'s)').argParser((v) => new Date(Date.now() + parseDuration(v)));
}

/** The filter options `devices list` and `devices count` share. */
interface DeviceFilterOptions {
  label?: Record<string, string>;
  status?: string;
  namePrefix?: string;
  type?: string;
  group?: string;
  deviceType?: string;
}

function filterOptions(command: Command): Command {
  return command
    .addOption(labelOption('only devices with this label'))
    .addOption(new Option('--status <status>', 'only devices with this status').choices(Object.keys(STATUS)))
    .option('--name-prefix <prefix>', 'only devices whose name starts so')
    .option('--type <type>', 'only devices of this type')
    .option('--device-type <id>', 'only devices of this device type (id)')
    .option('--group <id>', "only devices the group's selector matches");
}

/** The ListDevices / CountDevices filter fields of the options. */
function deviceFilter(options: DeviceFilterOptions) {
  return {
    labels: options.label ?? {},
    status: options.status ? STATUS[options.status] : DeviceStatus.DEVICE_STATUS_UNSPECIFIED,
    namePrefix: options.namePrefix ?? '',
    type: options.type ?? '',
    groupId: options.group ?? '',
    deviceTypeId: options.deviceType ?? '',
  };
}

const countView: View<{ count: number }> = { columns: [{ header: 'COUNT', value: (c) => String(c.count) }], toJson: (c) => c };

/** `devices …` and `credentials …`. */
export function deviceCommands(program: Command): void {
  const devices = program.command('devices').description('the device registry');

  filterOptions(listCommand<Device, DeviceFilterOptions & { sort?: string }>(
    devices,
    'list devices, filtered by labels, status, name prefix, type, device type or group, sorted by the server',
    deviceListView,
    async (connection, page, options) => {
      const res = await connection.call(connection.devices, connection.devices.listDevices, { page, ...deviceFilter(options), orderBy: options.sort ?? '' });
      return { items: res.devices, page: res.page };
    },
  )
    .option('--sort <order>', 'sort by name, type, status, create_time or last_seen_time, optionally followed by " desc" (such as "last_seen_time desc")'));

  filterOptions(
    devices
      .command('count')
      .description('count the devices matching the filters (over every page of `devices list`)')
      .action((_o, command: Command) =>
        run<DeviceFilterOptions>(command, async (connection, options) => {
          const res = await connection.call(connection.devices, connection.devices.countDevices, deviceFilter(options));
          printOne(options.output, countView, { count: Number(res.count) });
        }),
      ),
  );

  idCommand(devices, 'get', 'show one device', ['<id>', 'device id'], async (connection, id, options) => {
    const res = await connection.call(connection.devices, connection.devices.getDevice, { id });
    printOne(options.output, deviceView, res.device!);
  });

  devices
    .command('create')
    .description('register a device (then `iotctl credentials issue <id>` gives it a credential)')
    .requiredOption('--name <name>', 'display name')
    .option('--id <id>', 'device id (lower-case letters, digits, - and _; server-assigned when missing)')
    .option('--type <type>', 'model or kind, such as weather-station', '')
    .addOption(labelOption('a label'))
    .action((_o, command: Command) =>
      run<{ name: string; id?: string; type: string; label?: Record<string, string> }>(command, async (connection, options) => {
        const device = Device.fromPartial({ id: options.id ?? '', name: options.name, type: options.type, labels: options.label ?? {} });
        const res = await connection.call(connection.devices, connection.devices.createDevice, { device });
        printOne(options.output, deviceView, res.device!);
      }),
    );

  devices
    .command('update')
    .description('change a device\'s name, type or labels (only what is given; --label replaces all labels)')
    .argument('<id>', 'device id')
    .option('--name <name>', 'new display name')
    .option('--type <type>', 'new type')
    .addOption(labelOption('the new labels, replacing the old ones'))
    .option('--clear-labels', 'remove every label')
    .action((id: string, _o, command: Command) =>
      run<{ name?: string; type?: string; label?: Record<string, string>; clearLabels?: boolean }>(command, async (connection, options) => {
        if (options.label && options.clearLabels) throw new UsageError('--label and --clear-labels exclude each other');
        const updateMask = [
          ...(options.name !== undefined ? ['name'] : []),
          ...(options.type !== undefined ? ['type'] : []),
          ...(options.label || options.clearLabels ? ['labels'] : []),
        ];
        if (updateMask.length === 0) throw new UsageError('nothing to update: give --name, --type, --label or --clear-labels');
        const device = Device.fromPartial({ id, name: options.name ?? '', type: options.type ?? '', labels: options.label ?? {} });
        const res = await connection.call(connection.devices, connection.devices.updateDevice, { device, updateMask });
        printOne(options.output, deviceView, res.device!);
      }),
    );

  deleteCommand(devices, 'delete a device (its credential stops working)', 'device', ['<id>', 'device id'], (connection, id) => connection.call(connection.devices, connection.devices.deleteDevice, { id }));

  const credentials = program.command('credentials').description('a device\'s NATS/MQTT credential (the token is shown once)');

  // Issue and rotate take the same request and answer the same way.
  for (const [name, description, method] of [
    ['issue', 'issue a device its credential', 'issueCredential'],
    ['rotate', 'replace a device\'s credential (the old one is revoked)', 'rotateCredential'],
  ] as const) {
    credentials
      .command(name)
      .description(description)
      .argument('<device-id>', 'device id')
      .addOption(expiryOption())
      .addOption(new Option('--kind <kind>', 'how the device connects; the server refuses the other (default: the server\'s, mqtt unless configured)').choices(Object.keys(KIND)))
      .addOption(new Option('--creds <file>', 'also write a NATS credential as a creds file (its JWT and seed, mode 0600) for nats.js credsAuthenticator or the nats CLI'))
      .action((deviceId: string, _o, command: Command) =>
        run<{ expires?: Date; kind?: string; creds?: string }>(command, async (connection, options) => {
          const client = connection.credentials;
          const kind = options.kind ? KIND[options.kind] : CredentialKind.CREDENTIAL_KIND_UNSPECIFIED;
          const res = await connection.call(client, client[method], { deviceId, expireTime: options.expires, kind });
          printOne(options.output, credentialView, res.credential!);
          if (options.creds) writeCredsFile(options.creds, res.credential!);
        }),
      );
  }

  credentials
    .command('batch-issue')
    .description('issue credentials to several devices in one call (up to 1000; all or none)')
    .argument('<device-id...>', 'device ids')
    .addOption(expiryOption())
    .addOption(new Option('--kind <kind>', 'how the devices connect (default: the server\'s)').choices(Object.keys(KIND)))
    .action((deviceIds: string[], _o, command: Command) =>
      run<{ expires?: Date; kind?: string }>(command, async (connection, options) => {
        const client = connection.credentials;
        const kind = options.kind ? KIND[options.kind] : CredentialKind.CREDENTIAL_KIND_UNSPECIFIED;
        const res = await connection.call(client, client.batchIssueCredentials, { deviceIds, expireTime: options.expires, kind });
        printList(options.output, credentialView, res.credentials);
      }),
    );

  credentials
    .command('revoke')
    .description('revoke a device\'s credential (its live connection is dropped)')
    .argument('<device-id>', 'device id')
    .action((deviceId: string, _o, command: Command) =>
      run(command, async (connection, options) => {
        const res = await connection.call(connection.credentials, connection.credentials.revokeCredential, { deviceId });
        printOne(options.output, deviceView, res.device!);
      }),
    );
}
