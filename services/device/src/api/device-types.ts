import { callerTenant, defineService, errors, pageSize, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import {
  DefaultAlertRule,
  DeviceType,
  DeviceTypeServiceService,
  MetricKind,
  UnknownMetricPolicy,
} from '../../../../gen/ts/iot/device/v1/device_types';
import { DeviceTypes } from '../domain/device-types';
import { DeviceTypeInput, DeviceTypeRecord, MetricDefinition, UnknownMetricPolicy as Policy } from '../domain/model';
import { decodeSeqToken, encodeSeqToken } from './devices';

const METRIC_KINDS: Record<MetricDefinition['kind'], MetricKind> = {
  unspecified: MetricKind.METRIC_KIND_UNSPECIFIED,
  gauge: MetricKind.METRIC_KIND_GAUGE,
  counter: MetricKind.METRIC_KIND_COUNTER,
  boolean: MetricKind.METRIC_KIND_BOOLEAN,
};

/** The `iot.device.v1.UnknownMetricPolicy` of a stored policy (UNSPECIFIED for an untyped device). */
export function toUnknownMetricPolicy(policy: Policy | undefined): UnknownMetricPolicy {
  if (policy === 'dead_letter') return UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_DEAD_LETTER;
  if (policy === 'accept') return UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_ACCEPT;
  return UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_UNSPECIFIED;
}

/** A device type record as the `iot.device.v1.DeviceType` message. */
export function toDeviceTypeMessage(t: DeviceTypeRecord): DeviceType {
  return {
    id: t.id,
    tenantId: t.tenantId,
    name: t.name,
    displayName: t.displayName,
    description: t.description,
    metrics: t.metrics.map((m) => ({ name: m.name, displayName: m.displayName, unit: m.unit, kind: METRIC_KINDS[m.kind], min: m.min, max: m.max })),
    commands: t.commands.map((c) => ({ name: c.name, description: c.description, parametersSchema: c.parametersSchema })),
    desiredSchema: t.desiredSchema,
    reportedSchema: t.reportedSchema,
    defaultAlertRules: t.defaultAlertRules.map((r) => DefaultAlertRule.fromJSON(r)),
    firmwareVersion: t.firmwareVersion,
    unknownMetricPolicy: toUnknownMetricPolicy(t.unknownMetricPolicy),
    createTime: t.createTime,
    updateTime: t.updateTime,
  };
}

/** The fields of a DeviceType message a caller sets, as the domain holds them. */
function toInput(m: DeviceType): DeviceTypeInput {
  const kind = (k: MetricKind) => (Object.entries(METRIC_KINDS).find(([, v]) => v === k)?.[0] ?? 'unspecified') as MetricDefinition['kind'];
  return {
    name: m.name,
    displayName: m.displayName.trim(),
    description: m.description,
    metrics: m.metrics.map((x) => ({ name: x.name, displayName: x.displayName, unit: x.unit, kind: kind(x.kind), min: x.min, max: x.max })),
    commands: m.commands.map((c) => ({ name: c.name, description: c.description, parametersSchema: c.parametersSchema })),
    desiredSchema: m.desiredSchema,
    reportedSchema: m.reportedSchema,
    defaultAlertRules: m.defaultAlertRules.map((r) => DefaultAlertRule.toJSON(r) as Record<string, unknown>),
    firmwareVersion: m.firmwareVersion.trim(),
    unknownMetricPolicy: m.unknownMetricPolicy === UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_DEAD_LETTER ? 'dead_letter' : 'accept',
  };
}

/** UpdateDeviceType's field-mask paths (proto names) → the input field each replaces. */
const UPDATABLE: Record<string, keyof DeviceTypeInput> = {
  display_name: 'displayName',
  description: 'description',
  metrics: 'metrics',
  commands: 'commands',
  desired_schema: 'desiredSchema',
  reported_schema: 'reportedSchema',
  default_alert_rules: 'defaultAlertRules',
  firmware_version: 'firmwareVersion',
  unknown_metric_policy: 'unknownMetricPolicy',
};

/** `iot.device.v1.DeviceTypeService`: device types of the caller's tenant. */
export function deviceTypeApi(types: DeviceTypes): ServiceRegistration {
  return defineService(DeviceTypeServiceService, {
    async createDeviceType(request, ctx) {
      if (!request.deviceType) throw errors.invalidArgument([{ field: 'device_type', description: 'is required' }]);
      return { deviceType: toDeviceTypeMessage(await types.create(callerTenant(ctx), toInput(request.deviceType))) };
    },
    async getDeviceType(request, ctx) {
      return { deviceType: toDeviceTypeMessage(await types.get(callerTenant(ctx), request.id)) };
    },
    async updateDeviceType(request, ctx) {
      const v = new Violations();
      v.required(request.deviceType?.id, 'device_type.id');
      const paths = request.updateMask ?? [];
      for (const path of paths) v.check(path in UPDATABLE, 'update_mask', `cannot update ${JSON.stringify(path)}; updatable: ${Object.keys(UPDATABLE).join(', ')}`);
      v.throwIfAny();
      const given = toInput(request.deviceType!);
      const fields = paths.length > 0 ? paths.map((p) => UPDATABLE[p]) : Object.values(UPDATABLE);
      const updated = await types.update(callerTenant(ctx), request.deviceType!.id, (current) => {
        const next: DeviceTypeInput = { ...current };
        for (const field of fields) (next as unknown as Record<string, unknown>)[field] = given[field];
        return next;
      });
      return { deviceType: toDeviceTypeMessage(updated) };
    },
    async deleteDeviceType(request, ctx) {
      await types.delete(callerTenant(ctx), request.id);
      return {};
    },
    async listDeviceTypes(request, ctx) {
      const page = await types.list(callerTenant(ctx), pageSize(request.page?.pageSize), decodeSeqToken(request.page?.pageToken));
      return { deviceTypes: page.types.map(toDeviceTypeMessage), page: { nextPageToken: encodeSeqToken(page.nextAfter) } };
    },
  });
}
