import crypto from 'node:crypto';
import { alertConditionViolations, errors, FieldViolation, isSubjectToken, METRIC_NAME, Violations } from '@iot-mesh/runtime';
import { DefaultAlertRule } from '../../../../gen/ts/iot/device/v1/device_types';
import type { DeviceStore } from '../store/device-store';
import type { DeviceTypeStore } from '../store/device-type-store';
import { COMMAND_NAME } from './commands';
import type { DeviceChanges } from './devices';
import { DeviceRecord, DeviceTypeInput, DeviceTypeRecord, JsonObject } from './model';
import { SchemaValidator } from './schemas';

/** Limits of a device type's lists. */
export const DEVICE_TYPE_LIMITS = { metrics: 256, commands: 128, alertRules: 64, text: 200, description: 2000 } as const;

/** What device types are built from. */
export interface DeviceTypesDeps {
  store: DeviceTypeStore;
  /** Devices of a type, to rewrite their directory entries when the type changes. */
  devices: Pick<DeviceStore, 'list'>;
  changes: Pick<DeviceChanges, 'announce'>;
  schemas?: SchemaValidator;
}

/**
 * Device types of every tenant, and the checks they impose on their devices:
 * desired state, reported state and command payloads against the type's JSON
 * Schemas (ajv, see `schemas.ts`). A device without a type is not checked.
 */
export class DeviceTypes {
  private readonly schemas: SchemaValidator;

  constructor(private readonly deps: DeviceTypesDeps) {
    this.schemas = deps.schemas ?? new SchemaValidator();
  }

  async create(tenantId: string, input: DeviceTypeInput): Promise<DeviceTypeRecord> {
    const v = new Violations();
    v.check(isSubjectToken(input.name), 'device_type.name', "must be 1-64 characters: lower-case letters, digits, '-', '_', starting with a letter or digit");
    this.check(input, 'device_type', v);
    v.throwIfAny();
    return this.deps.store.insert(tenantId, crypto.randomUUID(), input);
  }

  /** A type by id or name; NOT_FOUND when the tenant has none such. */
  async get(tenantId: string, idOrName: string, field = 'id'): Promise<DeviceTypeRecord> {
    if (!idOrName) throw errors.invalidArgument([{ field, description: 'is required' }]);
    const type = await this.deps.store.get(tenantId, idOrName);
    if (!type) throw errors.notFound('device type', idOrName);
    return type;
  }

  /** Applies `change` to the stored type and rewrites the directory entries of its devices (their policy and metrics may have changed). */
  async update(tenantId: string, idOrName: string, change: (current: DeviceTypeInput) => DeviceTypeInput): Promise<DeviceTypeRecord> {
    const current = await this.get(tenantId, idOrName, 'device_type.id');
    const next = change(current);
    const v = new Violations();
    this.check(next, 'device_type', v);
    v.throwIfAny();
    const updated = await this.deps.store.replace(tenantId, current.id, next);
    if (!updated) throw errors.notFound('device type', idOrName);
    for (let after: string | undefined; ; ) {
      const page = await this.deps.devices.list(tenantId, { deviceTypeId: updated.id }, after, 500);
      if (page.length === 0) break;
      await this.deps.changes.announce('updated', page);
      after = page[page.length - 1].seq;
    }
    return updated;
  }

  async delete(tenantId: string, idOrName: string): Promise<void> {
    const type = await this.get(tenantId, idOrName);
    if (!(await this.deps.store.delete(tenantId, type.id))) throw errors.notFound('device type', idOrName);
  }

  async list(tenantId: string, size: number, after: string | undefined): Promise<{ types: DeviceTypeRecord[]; nextAfter?: string }> {
    const rows = await this.deps.store.list(tenantId, after, size + 1);
    const types = rows.slice(0, size);
    return { types, nextAfter: rows.length > size ? types[types.length - 1].seq : undefined };
  }

  /** A type by id or name; undefined when the tenant has none such. */
  byName(tenantId: string, idOrName: string): Promise<DeviceTypeRecord | undefined> {
    return this.deps.store.get(tenantId, idOrName);
  }

  /** The type of `device`; undefined for an untyped one. */
  async of(device: Pick<DeviceRecord, 'tenantId' | 'deviceTypeId'>): Promise<DeviceTypeRecord | undefined> {
    return device.deviceTypeId ? this.deps.store.get(device.tenantId, device.deviceTypeId) : undefined;
  }

  /** Types by id, for the device directory. */
  async byIds(ids: string[]): Promise<Map<string, DeviceTypeRecord>> {
    const types = await this.deps.store.getMany([...new Set(ids)]);
    return new Map(types.map((t) => [t.id, t]));
  }

  /** INVALID_ARGUMENT with field violations when `desired` fails the desired-state schema of the device's type. */
  async checkDesired(device: DeviceRecord, desired: JsonObject): Promise<void> {
    const type = await this.of(device);
    if (type?.desiredSchema) throwViolations(this.schemas.violations(type.desiredSchema, desired, 'desired'));
  }

  /** Whether `reported` passes the reported-state schema of the device's type. */
  async reportedViolations(device: Pick<DeviceRecord, 'tenantId' | 'deviceTypeId'>, reported: JsonObject): Promise<FieldViolation[]> {
    const type = await this.of(device);
    return type?.reportedSchema ? this.schemas.violations(type.reportedSchema, reported, 'reported') : [];
  }

  /** INVALID_ARGUMENT unless the device's type (when it declares commands) takes `name` with this payload. */
  async checkCommand(device: DeviceRecord, name: string, payload: JsonObject | undefined): Promise<void> {
    const type = await this.of(device);
    if (!type || type.commands.length === 0) return;
    const command = type.commands.find((c) => c.name === name);
    if (!command) {
      throw errors.invalidArgument([{ field: 'name', description: `device type ${JSON.stringify(type.name)} has no command ${JSON.stringify(name)}; it takes: ${type.commands.map((c) => c.name).join(', ')}` }]);
    }
    if (command.parametersSchema) throwViolations(this.schemas.violations(command.parametersSchema, payload ?? {}, 'payload'));
  }

  /** Field violations of a type's fields (names unique, ranges ordered, schemas compilable). */
  private check(input: DeviceTypeInput, prefix: string, v: Violations): void {
    v.maxLength(input.displayName, DEVICE_TYPE_LIMITS.text, `${prefix}.display_name`);
    v.maxLength(input.description, DEVICE_TYPE_LIMITS.description, `${prefix}.description`);
    v.maxLength(input.firmwareVersion, DEVICE_TYPE_LIMITS.text, `${prefix}.firmware_version`);
    v.check(input.metrics.length <= DEVICE_TYPE_LIMITS.metrics, `${prefix}.metrics`, `at most ${DEVICE_TYPE_LIMITS.metrics} metrics`);
    const metricNames = new Set<string>();
    input.metrics.forEach((m, i) => {
      const at = `${prefix}.metrics[${i}]`;
      v.check(METRIC_NAME.test(m.name), `${at}.name`, "must be 1-128 characters: letters, digits, '_', '.', '-'");
      v.check(!metricNames.has(m.name), `${at}.name`, 'repeats an earlier metric');
      metricNames.add(m.name);
      v.maxLength(m.unit, 32, `${at}.unit`);
      v.maxLength(m.displayName, DEVICE_TYPE_LIMITS.text, `${at}.display_name`);
      if (m.min !== undefined && m.max !== undefined) v.check(m.min <= m.max, `${at}.max`, 'must not be below min');
    });
    v.check(input.commands.length <= DEVICE_TYPE_LIMITS.commands, `${prefix}.commands`, `at most ${DEVICE_TYPE_LIMITS.commands} commands`);
    const commandNames = new Set<string>();
    input.commands.forEach((c, i) => {
      const at = `${prefix}.commands[${i}]`;
      v.check(COMMAND_NAME.test(c.name), `${at}.name`, "must be 1-128 characters: letters, digits, '_', '.', '-'");
      v.check(!commandNames.has(c.name), `${at}.name`, 'repeats an earlier command');
      commandNames.add(c.name);
      if (c.parametersSchema) this.checkSchema(c.parametersSchema, `${at}.parameters_schema`, v);
    });
    if (input.desiredSchema) this.checkSchema(input.desiredSchema, `${prefix}.desired_schema`, v);
    if (input.reportedSchema) this.checkSchema(input.reportedSchema, `${prefix}.reported_schema`, v);
    v.check(input.defaultAlertRules.length <= DEVICE_TYPE_LIMITS.alertRules, `${prefix}.default_alert_rules`, `at most ${DEVICE_TYPE_LIMITS.alertRules} rules`);
    const ruleNames = new Set<string>();
    input.defaultAlertRules.forEach((r, i) => {
      // Monitoring keeps each as an alert rule named so, one per name in the type.
      const name = typeof r.name === 'string' ? r.name : '';
      v.check(name.length > 0 && name.length <= DEVICE_TYPE_LIMITS.text, `${prefix}.default_alert_rules[${i}].name`, `must be 1-${DEVICE_TYPE_LIMITS.text} characters`);
      v.check(!ruleNames.has(name), `${prefix}.default_alert_rules[${i}].name`, 'repeats an earlier rule');
      ruleNames.add(name);
      const metric = typeof r.metric === 'string' ? r.metric : '';
      v.check(metricNames.has(metric), `${prefix}.default_alert_rules[${i}].metric`, 'must be one of the type\'s metrics');
      // The condition as monitoring checks an alert rule's: refused here, not ignored there.
      for (const violation of alertConditionViolations(DefaultAlertRule.fromJSON(r), `${prefix}.default_alert_rules[${i}]`)) v.add(violation.field, violation.description);
    });
  }

  private checkSchema(schema: JsonObject, field: string, v: Violations): void {
    const problem = this.schemas.problem(schema);
    if (problem) v.add(field, problem);
  }
}

function throwViolations(violations: FieldViolation[]): void {
  if (violations.length > 0) throw errors.invalidArgument(violations);
}
