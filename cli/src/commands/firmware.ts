import { Command, Option } from 'commander';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { MAX_FIRMWARE_CHUNK_BYTES } from '@iot-mesh/runtime/client';
import { Campaign, CampaignDevice, campaignStageToJSON, campaignStateToJSON, DownloadFirmwareResponse, Firmware, WatchCampaignResponse } from '../../../gen/ts/iot/device/v1/firmware';
import { jobDeviceStateToJSON } from '../../../gen/ts/iot/device/v1/jobs';
import { countsText } from './jobs';
import { UsageError } from '../cli-error';
import { deleteCommand, idCommand, listCommand, run } from '../command-context';
import { formatTime, printOne, View } from '../output';
import { collectList, enumLabel, parseDuration, parsePositiveInt } from '../parse';

const firmwareView: View<Firmware> = {
  columns: [
    { header: 'ID', value: (f) => f.id },
    { header: 'VERSION', value: (f) => f.version },
    { header: 'DEVICE TYPE', value: (f) => f.deviceTypeId },
    { header: 'SIZE', value: (f) => f.sizeBytes.toString() },
    { header: 'SHA-256', value: (f) => f.sha256 },
    { header: 'URL', value: (f) => f.url },
    { header: 'CREATED', value: (f) => formatTime(f.createTime) },
  ],
  toJson: (f) => Firmware.toJSON(f),
};

const campaignView: View<Campaign> = {
  columns: [
    { header: 'ID', value: (c) => c.id },
    { header: 'VERSION', value: (c) => c.version },
    { header: 'TARGET', value: (c) => (c.groupId ? `group ${c.groupId}` : 'device list') },
    { header: 'STATE', value: (c) => enumLabel(campaignStateToJSON(c.state), 'CAMPAIGN_STATE_') },
    { header: 'STAGE', value: (c) => enumLabel(campaignStageToJSON(c.stage), 'CAMPAIGN_STAGE_') },
    { header: 'PROGRESS', value: (c) => countsText(c.counts) },
    { header: 'REASON', value: (c) => c.reason },
    { header: 'CREATED', value: (c) => formatTime(c.createTime) },
  ],
  toJson: (c) => Campaign.toJSON(c),
};

const campaignDeviceView: View<CampaignDevice> = {
  columns: [
    { header: 'DEVICE', value: (d) => d.deviceId },
    { header: 'STAGE', value: (d) => enumLabel(campaignStageToJSON(d.stage), 'CAMPAIGN_STAGE_') },
    { header: 'STATE', value: (d) => enumLabel(jobDeviceStateToJSON(d.state), 'JOB_DEVICE_STATE_') },
    { header: 'REASON', value: (d) => d.reason },
    { header: 'SENT', value: (d) => formatTime(d.sentTime) },
    { header: 'FINISHED', value: (d) => formatTime(d.finishTime) },
  ],
  toJson: (d) => CampaignDevice.toJSON(d),
};

function readImage(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
}

interface CreateFirmwareOptions {
  release: string;
  type: string;
  url: string;
  file?: string;
  size?: number;
  sha256?: string;
  description: string;
}

/** `firmware …`: firmware artefacts (a version of a device type's firmware and where devices download it). */
export function firmwareCommands(program: Command): void {
  const firmware = program.command('firmware').description('firmware artefacts: version, device type, size, SHA-256 and download URL');
  firmware
    .command('create')
    .description('register a firmware version; --file computes its size and SHA-256 from the image (which is served at --url)')
    .requiredOption('--release <version>', 'firmware version (not --version: that is iotctl\'s own)')
    .requiredOption('--type <id>', 'device type id')
    .requiredOption('--url <url>', 'http(s) URL devices download it from')
    .option('--file <path>', 'the image, to compute --size and --sha256')
    .addOption(new Option('--size <bytes>', 'image size').argParser(parsePositiveInt))
    .option('--sha256 <hex>', 'SHA-256 of the image')
    .option('--description <text>', 'release notes', '')
    .action((_o, command: Command) =>
      run<CreateFirmwareOptions>(command, async (connection, o) => {
        let { size, sha256 } = o;
        if (o.file) {
          const image = fs.readFileSync(o.file);
          size = image.length;
          sha256 = crypto.createHash('sha256').update(image).digest('hex');
        }
        if (size === undefined || !sha256) throw new UsageError('give --file, or --size and --sha256');
        const created = await connection.call(connection.firmware, connection.firmware.createFirmware, {
          firmware: Firmware.fromPartial({ version: o.release, deviceTypeId: o.type, url: o.url, sizeBytes: BigInt(size), sha256, description: o.description }),
        });
        printOne(o.output, firmwareView, created.firmware!);
      }),
    );
  firmware
    .command('upload')
    .description('store an image on the platform: registers the version, uploads the file in 1 MiB chunks (progress on stderr) and prints the firmware with the SHA-256 the platform computed')
    .argument('<file>', 'the image')
    .requiredOption('--release <version>', 'firmware version')
    .requiredOption('--type <id>', 'device type id')
    .option('--sha256 <hex>', 'the SHA-256 you expect; the platform refuses an image that does not match (default: computed from the file)')
    .option('--description <text>', 'release notes', '')
    .action((file: string, _o, command: Command) =>
      run<{ release: string; type: string; sha256?: string; description: string }>(command, async (connection, o) => {
        const image = readImage(file);
        const declared = o.sha256 ?? crypto.createHash('sha256').update(image).digest('hex');
        let stored = (
          await connection.call(connection.firmware, connection.firmware.createFirmware, {
            firmware: Firmware.fromPartial({ version: o.release, deviceTypeId: o.type, stored: true, sizeBytes: BigInt(image.length), sha256: declared, description: o.description }),
          })
        ).firmware!;
        for (let offset = 0; offset < image.length || offset === 0; offset += MAX_FIRMWARE_CHUNK_BYTES) {
          const data = image.subarray(offset, offset + MAX_FIRMWARE_CHUNK_BYTES);
          const last = offset + MAX_FIRMWARE_CHUNK_BYTES >= image.length;
          stored = (await connection.call(connection.firmware, connection.firmware.uploadFirmwareChunk, { id: stored.id, offset: BigInt(offset), data, last })).firmware!;
          process.stderr.write(`uploaded ${offset + data.length} of ${image.length} bytes\n`);
          if (last) break;
        }
        printOne(o.output, firmwareView, stored);
      }),
    );
  firmware
    .command('download')
    .description('download a stored image to a file, checking it against the SHA-256 the platform holds')
    .argument('<id>', 'firmware id')
    .requiredOption('--out <path>', 'file to write')
    .action((id: string, _o, command: Command) =>
      run<{ out: string }>(command, async (connection, o) => {
        const stream = await connection.stream(connection.firmware, connection.firmware.downloadFirmware, { id, offset: 0n, length: 0n });
        const parts: Buffer[] = [];
        let expected = '';
        await new Promise<void>((resolve, reject) => {
          stream.on('data', (r: DownloadFirmwareResponse) => {
            if (!expected) expected = r.chunk!.sha256;
            parts.push(Buffer.from(r.chunk!.data));
          });
          stream.on('error', reject);
          stream.on('end', () => resolve());
        });
        const image = Buffer.concat(parts);
        const sha256 = crypto.createHash('sha256').update(image).digest('hex');
        if (sha256 !== expected) throw new Error(`the downloaded image's SHA-256 ${sha256} is not the platform's ${expected}; nothing written`);
        fs.writeFileSync(o.out, image);
        process.stderr.write(`wrote ${image.length} bytes, SHA-256 ${sha256}\n`);
      }),
    );
  const list = listCommand<Firmware, { type?: string }>(firmware, 'list firmware, newest first', firmwareView, async (connection, page, options) => {
    const res = await connection.call(connection.firmware, connection.firmware.listFirmware, { deviceTypeId: options.type ?? '', page });
    return { items: res.firmware, page: res.page };
  });
  list.option('--type <id>', 'only this device type\'s firmware');
  idCommand(firmware, 'get', 'show one firmware artefact', ['<id>', 'firmware id'], async (connection, id, options) => {
    printOne(options.output, firmwareView, (await connection.call(connection.firmware, connection.firmware.getFirmware, { id })).firmware!);
  });
  deleteCommand(firmware, 'delete a firmware artefact no running campaign installs', 'firmware', ['<id>', 'firmware id'], (connection, id) =>
    connection.call(connection.firmware, connection.firmware.deleteFirmware, { id }),
  );
}

interface CreateCampaignOptions {
  firmware: string;
  group?: string;
  devices?: string[];
  canaryPercent?: number;
  maxConcurrent?: number;
  failurePercent?: number;
  expires?: number;
  description: string;
}

/** `campaigns …`: staged firmware roll-outs (canary share first, then the rest). */
export function campaignCommands(program: Command): void {
  const campaigns = program.command('campaigns').description('firmware campaigns: the canary share first, then the rest; stop on the failure threshold');
  campaigns
    .command('create')
    .description('start a campaign over a group (--group) or devices (--devices)')
    .requiredOption('--firmware <id>', 'firmware id')
    .option('--group <id>', 'group id')
    .addOption(new Option('--devices <ids>', 'device ids (comma-separated or repeated)').argParser(collectList))
    .addOption(new Option('--canary-percent <n>', 'share of the devices updated first').argParser(parsePositiveInt))
    .addOption(new Option('--max-concurrent <n>', 'most devices updating at once (default 50)').argParser(parsePositiveInt))
    .addOption(new Option('--failure-percent <n>', 'abort once more than this % of a stage\'s finished devices failed').argParser(parsePositiveInt))
    .addOption(new Option('--expires <duration>', 'how long devices are waited for (default 24h)').argParser(parseDuration))
    .option('--description <text>', 'what the campaign is for', '')
    .action((_o, command: Command) =>
      run<CreateCampaignOptions>(command, async (connection, o) => {
        const campaign = Campaign.fromPartial({
          firmwareId: o.firmware,
          description: o.description,
          groupId: o.group ?? '',
          deviceIds: o.devices ?? [],
          canaryPercent: o.canaryPercent ?? 0,
          maxConcurrent: o.maxConcurrent ?? 0,
          failureThresholdPercent: o.failurePercent ?? 0,
          expireTime: o.expires ? new Date(Date.now() + o.expires) : undefined,
        });
        printOne(o.output, campaignView, (await connection.call(connection.campaigns, connection.campaigns.createCampaign, { campaign })).campaign!);
      }),
    );
  listCommand(campaigns, 'list campaigns, newest first', campaignView, async (connection, page) => {
    const res = await connection.call(connection.campaigns, connection.campaigns.listCampaigns, { page });
    return { items: res.campaigns, page: res.page };
  });
  idCommand(campaigns, 'get', 'show one campaign and its progress', ['<id>', 'campaign id'], async (connection, id, options) => {
    printOne(options.output, campaignView, (await connection.call(connection.campaigns, connection.campaigns.getCampaign, { id })).campaign!);
  });
  const devices = listCommand<CampaignDevice, { campaign: string }>(campaigns, 'each device of a campaign, its stage and state', campaignDeviceView, async (connection, page, options) => {
    const res = await connection.call(connection.campaigns, connection.campaigns.listCampaignDevices, { id: options.campaign, page });
    return { items: res.devices, page: res.page };
  }, 'devices');
  devices.requiredOption('--campaign <id>', 'campaign id');
  idCommand(campaigns, 'cancel', 'stop a campaign: devices not yet updating are cancelled', ['<id>', 'campaign id'], async (connection, id, options) => {
    printOne(options.output, campaignView, (await connection.call(connection.campaigns, connection.campaigns.cancelCampaign, { id })).campaign!);
  });
  idCommand(campaigns, 'watch', 'print the campaign\'s progress as it changes, until it ends', ['<id>', 'campaign id'], async (connection, id, options) => {
    const stream = await connection.stream(connection.campaigns, connection.campaigns.watchCampaign, { id });
    process.once('SIGINT', () => stream.cancel());
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (r: WatchCampaignResponse) => {
        const c = r.campaign!;
        if (options.output === 'json') process.stdout.write(`${JSON.stringify(Campaign.toJSON(c))}\n`);
        else process.stdout.write(`${enumLabel(campaignStateToJSON(c.state), 'CAMPAIGN_STATE_')} ${enumLabel(campaignStageToJSON(c.stage), 'CAMPAIGN_STAGE_')} ${countsText(c.counts)}${c.reason ? ` ${c.reason}` : ''}\n`);
      });
      stream.on('error', (err: { code?: number }) => (err.code === 1 ? resolve() : reject(err)));
      stream.on('end', () => resolve());
    });
  });
}
