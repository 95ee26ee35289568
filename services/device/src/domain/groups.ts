import crypto from 'node:crypto';
import { errors } from '@iot-mesh/runtime';
import type { GroupInput, GroupStore } from '../store/group-store';
import type { DevicePage, DeviceRegistry } from './devices';
import type { DeviceTypes } from './device-types';
import { GroupRecord } from './model';

/** Where the group directory other services watch is written (the NATS KV bucket). */
export interface GroupDirectoryWriter {
  put(group: GroupRecord): Promise<void>;
  remove(tenantId: string, groupId: string): Promise<void>;
}

/**
 * Device groups: saved selectors (labels, optionally a device type) of one
 * tenant. Membership is never stored: a group names whichever devices match
 * it when it is used, so relabelling a device moves it between groups.
 */
export class Groups {
  constructor(
    private readonly store: GroupStore,
    private readonly types: Pick<DeviceTypes, 'get'>,
    private readonly registry: Pick<DeviceRegistry, 'list'>,
    private readonly directory?: GroupDirectoryWriter,
  ) {}

  async create(tenantId: string, input: GroupInput): Promise<GroupRecord> {
    const group = await this.store.insert(tenantId, crypto.randomUUID(), await this.resolved(tenantId, input));
    await this.directory?.put(group);
    return group;
  }

  async get(tenantId: string, id: string, field = 'id'): Promise<GroupRecord> {
    if (!id) throw errors.invalidArgument([{ field, description: 'is required' }]);
    const group = await this.store.get(tenantId, id);
    if (!group) throw errors.notFound('group', id);
    return group;
  }

  /** Applies `change` to the stored group. */
  async update(tenantId: string, id: string, change: (current: GroupInput) => GroupInput): Promise<GroupRecord> {
    const current = await this.get(tenantId, id, 'group.id');
    const updated = await this.store.replace(tenantId, current.id, await this.resolved(tenantId, change(current)));
    if (!updated) throw errors.notFound('group', id);
    await this.directory?.put(updated);
    return updated;
  }

  async delete(tenantId: string, id: string): Promise<void> {
    if (!id) throw errors.invalidArgument([{ field: 'id', description: 'is required' }]);
    if (!(await this.store.delete(tenantId, id))) throw errors.notFound('group', id);
    await this.directory?.remove(tenantId, id);
  }

  async list(tenantId: string, size: number, after: string | undefined): Promise<{ groups: GroupRecord[]; nextAfter?: string }> {
    const rows = await this.store.list(tenantId, after, size + 1);
    const groups = rows.slice(0, size);
    return { groups, nextAfter: rows.length > size ? groups[groups.length - 1].seq : undefined };
  }

  /** The devices the group matches now. */
  async devices(tenantId: string, id: string, size: number, after: string | undefined): Promise<DevicePage> {
    await this.get(tenantId, id);
    return this.registry.list(tenantId, { groupId: id }, size, after);
  }

  /** The input with its device type (given by id or name) resolved to the type's id. */
  private async resolved(tenantId: string, input: GroupInput): Promise<GroupInput> {
    if (!input.deviceTypeId) return { ...input, deviceTypeId: undefined };
    const type = await this.types.get(tenantId, input.deviceTypeId, 'group.selector.device_type_id');
    return { ...input, deviceTypeId: type.id };
  }
}
