import { callerTenant, defineService, errors, pageSize, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { Group, GroupServiceService } from '../../../../gen/ts/iot/device/v1/groups';
import { Groups } from '../domain/groups';
import { GroupRecord } from '../domain/model';
import type { GroupInput } from '../store/group-store';
import { checkLabels, decodeSeqToken, encodeSeqToken, toDeviceMessage } from './devices';

/** A group record as the `iot.device.v1.Group` message. */
function toGroupMessage(g: GroupRecord): Group {
  return {
    id: g.id,
    tenantId: g.tenantId,
    name: g.name,
    description: g.description,
    selector: { matchLabels: g.matchLabels, deviceTypeId: g.deviceTypeId ?? '' },
    createTime: g.createTime,
    updateTime: g.updateTime,
  };
}

/** The group's fields as given, with violations recorded in `v`. */
function toInput(g: Group, v: Violations): GroupInput {
  if (v.required(g.name.trim(), 'group.name')) v.maxLength(g.name, 200, 'group.name');
  v.maxLength(g.description, 2000, 'group.description');
  checkLabels(g.selector?.matchLabels ?? {}, 'group.selector.match_labels', v);
  return { name: g.name.trim(), description: g.description, matchLabels: g.selector?.matchLabels ?? {}, deviceTypeId: g.selector?.deviceTypeId || undefined };
}

const UPDATABLE = ['name', 'description', 'selector'];

/** `iot.device.v1.GroupService`: saved device selectors of the caller's tenant. */
export function groupApi(groups: Groups): ServiceRegistration {
  return defineService(GroupServiceService, {
    async createGroup(request, ctx) {
      if (!request.group) throw errors.invalidArgument([{ field: 'group', description: 'is required' }]);
      const v = new Violations();
      const input = toInput(request.group, v);
      v.throwIfAny();
      return { group: toGroupMessage(await groups.create(callerTenant(ctx), input)) };
    },
    async getGroup(request, ctx) {
      return { group: toGroupMessage(await groups.get(callerTenant(ctx), request.id)) };
    },
    async updateGroup(request, ctx) {
      const v = new Violations();
      v.required(request.group?.id, 'group.id');
      const paths = request.updateMask ?? [];
      for (const path of paths) v.check(UPDATABLE.includes(path), 'update_mask', `cannot update ${JSON.stringify(path)}; updatable: ${UPDATABLE.join(', ')}`);
      const fields = paths.length > 0 ? paths : UPDATABLE;
      const given = request.group ? toInput({ ...request.group, name: fields.includes('name') ? request.group.name : 'unchanged' }, v) : undefined;
      v.throwIfAny();
      const updated = await groups.update(callerTenant(ctx), request.group!.id, (current) => ({
        name: fields.includes('name') ? given!.name : current.name,
        description: fields.includes('description') ? given!.description : current.description,
        matchLabels: fields.includes('selector') ? given!.matchLabels : current.matchLabels,
        deviceTypeId: fields.includes('selector') ? given!.deviceTypeId : current.deviceTypeId,
      }));
      return { group: toGroupMessage(updated) };
    },
    async deleteGroup(request, ctx) {
      await groups.delete(callerTenant(ctx), request.id);
      return {};
    },
    async listGroups(request, ctx) {
      const page = await groups.list(callerTenant(ctx), pageSize(request.page?.pageSize), decodeSeqToken(request.page?.pageToken));
      return { groups: page.groups.map(toGroupMessage), page: { nextPageToken: encodeSeqToken(page.nextAfter) } };
    },
    async listGroupDevices(request, ctx) {
      const page = await groups.devices(callerTenant(ctx), request.id, pageSize(request.page?.pageSize), decodeSeqToken(request.page?.pageToken));
      return { devices: page.devices.map(toDeviceMessage), page: { nextPageToken: encodeSeqToken(page.nextAfter) } };
    },
  });
}
