import fs from 'node:fs';
import { Command, Option } from 'commander';
import { Device } from '../../../gen/ts/iot/device/v1/device';
import { DeviceType, MetricKind, metricKindToJSON, unknownMetricPolicyToJSON } from '../../../gen/ts/iot/device/v1/device_types';
import { Group } from '../../../gen/ts/iot/device/v1/groups';
import { Claim, claimOutcomeToJSON, ProvisioningKey, provisioningKeyStateToJSON } from '../../../gen/ts/iot/device/v1/provisioning';
import { UsageError } from '../cli-error';
import { deleteCommand, idCommand, listCommand, run } from '../command-context';
import { formatLabels, formatTime, printOne, View } from '../output';
import { collectLabel, enumLabel, parseDuration, parsePositiveInt } from '../parse';
import { credentialView, deviceListView, deviceView } from './devices';

/** A metric as `temperature [°C] gauge -40..85`. */
function metricText(m: DeviceType['metrics'][number]): string {
  const range = m.min !== undefined || m.max !== undefined ? ` ${m.min ?? ''}..${m.max ?? ''}` : '';
  const kind = m.kind === MetricKind.METRIC_KIND_UNSPECIFIED ? '' : ` ${enumLabel(metricKindToJSON(m.kind), 'METRIC_KIND_')}`;
  return `${m.name}${m.unit ? ` [${m.unit}]` : ''}${kind}${range}`;
}

const deviceTypeView: View<DeviceType> = {
  columns: [
    { header: 'ID', value: (t) => t.id },
    { header: 'NAME', value: (t) => t.name },
    { header: 'DISPLAY NAME', value: (t) => t.displayName },
    { header: 'METRICS', value: (t) => t.metrics.map(metricText).join(', ') },
    { header: 'COMMANDS', value: (t) => t.commands.map((c) => c.name).join(', ') },
    { header: 'FIRMWARE', value: (t) => t.firmwareVersion },
    { header: 'UNKNOWN METRICS', value: (t) => enumLabel(unknownMetricPolicyToJSON(t.unknownMetricPolicy), 'UNKNOWN_METRIC_POLICY_') },
  ],
  toJson: (t) => DeviceType.toJSON(t),
};

const groupView: View<Group> = {
  columns: [
    { header: 'ID', value: (g) => g.id },
    { header: 'NAME', value: (g) => g.name },
    { header: 'LABELS', value: (g) => formatLabels(g.selector?.matchLabels ?? {}) },
    { header: 'DEVICE TYPE', value: (g) => g.selector?.deviceTypeId ?? '' },
    { header: 'DESCRIPTION', value: (g) => g.description },
  ],
  toJson: (g) => Group.toJSON(g),
};

const keyView: View<ProvisioningKey> = {
  columns: [
    { header: 'ID', value: (k) => k.id },
    { header: 'NAME', value: (k) => k.name },
    { header: 'KEY', value: (k) => `${k.secretPrefix}…` },
    { header: 'STATE', value: (k) => enumLabel(provisioningKeyStateToJSON(k.state), 'PROVISIONING_KEY_STATE_') },
    { header: 'DEVICES', value: (k) => (k.usageLimit > 0n ? `${k.deviceCount}/${k.usageLimit}` : String(k.deviceCount)) },
    { header: 'CLAIMS', value: (k) => String(k.claimCount) },
    { header: 'DEVICE TYPE', value: (k) => k.deviceTypeId },
    { header: 'LABELS', value: (k) => formatLabels(k.labels) },
    { header: 'EXPIRES', value: (k) => formatTime(k.expireTime) },
  ],
  toJson: (k) => ProvisioningKey.toJSON(k),
};

const claimView: View<Claim> = {
  columns: [
    { header: 'TIME', value: (c) => formatTime(c.claimTime) },
    { header: 'SERIAL', value: (c) => c.serialNumber },
    { header: 'OUTCOME', value: (c) => enumLabel(claimOutcomeToJSON(c.outcome), 'CLAIM_OUTCOME_') },
    { header: 'DEVICE', value: (c) => c.deviceId },
    { header: 'PEER', value: (c) => c.peer },
  ],
  toJson: (c) => Claim.toJSON(c),
};

/** A device type from a proto3 JSON file (`-` for stdin). */
function readDeviceType(file: string): DeviceType {
  const text = fs.readFileSync(file === '-' ? 0 : file, 'utf8');
  try {
    return DeviceType.fromJSON(JSON.parse(text));
  } catch (err) {
    throw new UsageError(`${file} is not a DeviceType in proto3 JSON: ${(err as Error).message}`);
  }
}

/** `device-types …`, `groups …`, `provisioning …`. */
export function fleetCommands(program: Command): void {
  const types = program.command('device-types').description('device types: metrics with units, command and state schemas, firmware');
  listCommand(types, 'list device types', deviceTypeView, async (connection, page) => {
    const res = await connection.call(connection.deviceTypes, connection.deviceTypes.listDeviceTypes, { page });
    return { items: res.deviceTypes, page: res.page };
  });
  idCommand(types, 'get', 'show one device type (by id or name)', ['<id-or-name>', 'device type id or name'], async (connection, id, options) => {
    printOne(options.output, deviceTypeView, (await connection.call(connection.deviceTypes, connection.deviceTypes.getDeviceType, { id })).deviceType!);
  });
  types
    .command('create')
    .description('create a device type from a proto3 JSON file (see the README for an example)')
    .requiredOption('--file <path>', 'the DeviceType as proto3 JSON, - for stdin')
    .action((_o, command: Command) =>
      run<{ file: string }>(command, async (connection, options) => {
        const res = await connection.call(connection.deviceTypes, connection.deviceTypes.createDeviceType, { deviceType: readDeviceType(options.file) });
        printOne(options.output, deviceTypeView, res.deviceType!);
      }),
    );
  types
    .command('update')
    .description('replace a device type\'s fields (all but its name) from a proto3 JSON file')
    .argument('<id-or-name>', 'device type id or name')
    .requiredOption('--file <path>', 'the DeviceType as proto3 JSON, - for stdin')
    .action((id: string, _o, command: Command) =>
      run<{ file: string }>(command, async (connection, options) => {
        const res = await connection.call(connection.deviceTypes, connection.deviceTypes.updateDeviceType, { deviceType: { ...readDeviceType(options.file), id }, updateMask: [] });
        printOne(options.output, deviceTypeView, res.deviceType!);
      }),
    );
  deleteCommand(types, 'delete a device type no device, key or group uses', 'device type', ['<id-or-name>', 'device type id or name'], (connection, id) => connection.call(connection.deviceTypes, connection.deviceTypes.deleteDeviceType, { id }));

  const groups = program.command('groups').description('device groups: saved label selectors');
  listCommand(groups, 'list groups', groupView, async (connection, page) => {
    const res = await connection.call(connection.groups, connection.groups.listGroups, { page });
    return { items: res.groups, page: res.page };
  });
  groups
    .command('create')
    .description('save a selector: devices with all these labels (and of this type)')
    .requiredOption('--name <name>', 'group name')
    .option('--description <text>', 'what the group is for', '')
    .addOption(new Option('--label <key=value>', 'devices with this label (repeatable)').argParser(collectLabel))
    .option('--device-type <id-or-name>', 'only devices of this type')
    .action((_o, command: Command) =>
      run<{ name: string; description: string; label?: Record<string, string>; deviceType?: string }>(command, async (connection, options) => {
        const group = Group.fromPartial({ name: options.name, description: options.description, selector: { matchLabels: options.label ?? {}, deviceTypeId: options.deviceType ?? '' } });
        printOne(options.output, groupView, (await connection.call(connection.groups, connection.groups.createGroup, { group })).group!);
      }),
    );
  const members = listCommand<Device, { group: string }>(groups, 'list the devices a group matches now', deviceListView, async (connection, page, options) => {
    const res = await connection.call(connection.groups, connection.groups.listGroupDevices, { id: options.group, page });
    return { items: res.devices, page: res.page };
  }, 'devices');
  members.requiredOption('--group <id>', 'group id');
  deleteCommand(groups, 'delete a group (its devices stay)', 'group', ['<id>', 'group id'], (connection, id) => connection.call(connection.groups, connection.groups.deleteGroup, { id }));

  const provisioning = program.command('provisioning').description('self-provisioning: keys devices register themselves with');
  const keys = provisioning.command('keys').description('provisioning keys (the secret is shown once)');
  listCommand(keys, 'list provisioning keys', keyView, async (connection, page) => {
    const res = await connection.call(connection.provisioning, connection.provisioning.listProvisioningKeys, { page });
    return { items: res.provisioningKeys, page: res.page };
  });
  keys
    .command('create')
    .description('create a key; devices claimed with it get its type and labels')
    .requiredOption('--name <name>', 'what the key is for, such as a factory line')
    .option('--device-type <id-or-name>', 'type of the devices it creates')
    .addOption(new Option('--label <key=value>', 'label of the devices it creates (repeatable)').argParser(collectLabel))
    .addOption(new Option('--usage-limit <n>', 'most devices it may create').argParser(parsePositiveInt))
    .addOption(new Option('--expires <duration>', 'lifetime, such as 7d').argParser((v) => new Date(Date.now() + parseDuration(v))))
    .action((_o, command: Command) =>
      run<{ name: string; deviceType?: string; label?: Record<string, string>; usageLimit?: number; expires?: Date }>(command, async (connection, options) => {
        const res = await connection.call(connection.provisioning, connection.provisioning.createProvisioningKey, {
          provisioningKey: ProvisioningKey.fromPartial({
            name: options.name,
            deviceTypeId: options.deviceType ?? '',
            labels: options.label ?? {},
            usageLimit: BigInt(options.usageLimit ?? 0),
            expireTime: options.expires,
          }),
        });
        if (options.output === 'table') process.stderr.write('The secret is shown once; only its hash is kept.\n');
        printOne(options.output, { columns: [{ header: 'SECRET', value: (r: typeof res) => r.secret }, ...keyView.columns.map((c) => ({ ...c, value: (r: typeof res) => c.value(r.provisioningKey!) }))], toJson: (r) => ({ secret: r.secret, provisioningKey: ProvisioningKey.toJSON(r.provisioningKey!) }) }, res);
      }),
    );
  idCommand(keys, 'revoke', 'refuse every later claim with the key (claimed devices keep working)', ['<id>', 'key id'], async (connection, id, options) => {
    printOne(options.output, keyView, (await connection.call(connection.provisioning, connection.provisioning.revokeProvisioningKey, { id })).provisioningKey!);
  });
  const claims = listCommand<Claim, { key: string }>(keys, 'the audit trail of a key: every claim, newest first', claimView, async (connection, page, options) => {
    const res = await connection.call(connection.provisioning, connection.provisioning.listClaims, { keyId: options.key, page });
    return { items: res.claims, page: res.page };
  }, 'claims');
  claims.requiredOption('--key <id>', 'key id');

  provisioning
    .command('claim')
    .description('what a device does: register with a provisioning key and a serial number (no login needed), printing its device and credential')
    .requiredOption('--key <secret>', 'the provisioning key secret (or IOTCTL_PROVISIONING_KEY)', process.env.IOTCTL_PROVISIONING_KEY)
    .requiredOption('--serial <serial>', 'the device\'s serial number')
    .option('--name <name>', 'name of a new device (default: the serial)', '')
    .action((_o, command: Command) =>
      run<{ key?: string; serial: string; name: string }>(command, async (connection, options) => {
        if (!options.key) throw new UsageError('--key is required');
        const res = await connection.anonymous(connection.provisioning, connection.provisioning.claimDevice, { provisioningKey: options.key, serialNumber: options.serial, name: options.name });
        if (options.output === 'json') {
          printOne(options.output, { columns: [], toJson: () => ({ outcome: claimOutcomeToJSON(res.outcome), device: deviceView.toJson(res.device!), credential: credentialView.toJson(res.credential!) }) }, res);
          return;
        }
        printOne(options.output, deviceView, res.device!);
        printOne(options.output, credentialView, res.credential!);
      }),
    );
}
