import { KV, NatsConnection } from 'nats';
import { GROUP_DIRECTORY_BUCKET, groupDirectoryKey, Logger } from '@iot-mesh/runtime';
import { GroupDirectoryEntry } from '../../../../gen/ts/iot/device/v1/directory';
import type { GroupDirectoryWriter } from '../domain/groups';
import { resyncBucket } from './directory-resync';
import type { GroupRecord } from '../domain/model';

/**
 * Writes the group directory (JetStream KV bucket {@link GROUP_DIRECTORY_BUCKET},
 * values binary `iot.device.v1.GroupDirectoryEntry`): each group's selector,
 * so monitoring resolves a group id against its device directory without a
 * call. PostgreSQL stays the source of truth: {@link GroupDirectoryPublisher.resync}
 * rebuilds the bucket from it on start.
 */
export class GroupDirectoryPublisher implements GroupDirectoryWriter {
  private constructor(
    private readonly kv: KV,
    private readonly log: Logger,
  ) {}

  /** Opens the bucket, creating it with `replicas` when missing (an existing bucket keeps its own). */
  static async open(nc: NatsConnection, log: Logger, replicas = 1): Promise<GroupDirectoryPublisher> {
    return new GroupDirectoryPublisher(await nc.jetstream().views.kv(GROUP_DIRECTORY_BUCKET, { history: 1, replicas }), log);
  }

  /** Writes a created or changed group's entry; a failure is logged (the next resync repairs it). */
  async put(group: GroupRecord): Promise<void> {
    const entry: GroupDirectoryEntry = { tenantId: group.tenantId, groupId: group.id, matchLabels: group.matchLabels, deviceTypeId: group.deviceTypeId ?? '' };
    await this.kv.put(groupDirectoryKey(group.tenantId, group.id), GroupDirectoryEntry.encode(entry).finish()).catch((err: Error) => this.log.warn({ err: err.message }, 'group directory write failed'));
  }

  /** Removes a deleted group's entry. */
  async remove(tenantId: string, groupId: string): Promise<void> {
    await this.kv.delete(groupDirectoryKey(tenantId, groupId)).catch((err: Error) => this.log.warn({ err: err.message }, 'group directory delete failed'));
  }

  /** Makes the bucket equal to `source`: writes every group, deletes keys of groups that are gone. */
  async resync(source: AsyncIterable<GroupRecord[]>): Promise<number> {
    const { count, removed } = await resyncBucket(this.kv, source, async (batch) => void (await Promise.all(batch.map((g) => this.put(g)))), (g) => groupDirectoryKey(g.tenantId, g.id));
    this.log.info({ groups: count, removed }, 'group directory resynced');
    return count;
  }
}
