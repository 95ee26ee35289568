import { isSubjectToken, Violations } from '@iot-mesh/runtime';
import { DevicePatch, NewDevice } from './model';

/** Limits of device fields, checked with a field violation each. */
export const DEVICE_LIMITS = {
  nameLength: 200,
  typeLength: 100,
  labels: 64,
  labelKeyLength: 63,
  labelValueLength: 256,
  batch: 1000,
} as const;

const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9_.\/-]*$/;

/** What a caller sends for a device; every field may be missing. */
export interface DeviceInput {
  id?: string;
  name?: string;
  type?: string;
  labels?: Record<string, string>;
}

function checkLabels(labels: Record<string, string>, field: string, v: Violations): void {
  const keys = Object.keys(labels);
  v.check(keys.length <= DEVICE_LIMITS.labels, field, `at most ${DEVICE_LIMITS.labels} labels`);
  for (const key of keys) {
    v.check(key.length <= DEVICE_LIMITS.labelKeyLength && LABEL_KEY.test(key), `${field}[${key}]`, `label keys are 1-${DEVICE_LIMITS.labelKeyLength} characters: letters, digits, '_', '.', '/', '-'`);
    v.check(labels[key].length <= DEVICE_LIMITS.labelValueLength, `${field}[${key}]`, `label values are at most ${DEVICE_LIMITS.labelValueLength} characters`);
  }
}

function checkName(name: string | undefined, field: string, v: Violations): void {
  if (v.required(name?.trim(), field)) v.maxLength(name, DEVICE_LIMITS.nameLength, field);
}

function checkType(type: string | undefined, field: string, v: Violations): void {
  v.maxLength(type, DEVICE_LIMITS.typeLength, field);
}

/** Validates one device to create (`prefix` names it in violations, e.g. `devices[3]`). */
export function checkNewDevice(input: DeviceInput | undefined, prefix: string, v: Violations): void {
  if (!input) {
    v.add(prefix, 'is required');
    return;
  }
  if (input.id) v.check(isSubjectToken(input.id), `${prefix}.id`, "must be 1-64 characters: lower-case letters, digits, '-', '_', starting with a letter or digit");
  checkName(input.name, `${prefix}.name`, v);
  checkType(input.type, `${prefix}.type`, v);
  checkLabels(input.labels ?? {}, `${prefix}.labels`, v);
}

/** The device to insert, with a server-assigned id when none was given. */
export function toNewDevice(input: DeviceInput, newId: () => string): NewDevice {
  return { id: input.id || newId(), name: input.name!.trim(), type: input.type ?? '', labels: input.labels ?? {} };
}

/** Paths of UpdateDevice's field mask (proto field names). */
const UPDATABLE = new Set(['name', 'type', 'labels']);

/**
 * The patch an update asks for: the masked fields, or (empty mask) every
 * field the caller set. INVALID_ARGUMENT for unknown paths or bad values.
 */
export function toPatch(input: DeviceInput | undefined, paths: string[], v: Violations): DevicePatch {
  if (!input) {
    v.add('device', 'is required');
    return {};
  }
  const effective = paths.length > 0 ? paths : ['name', 'type', 'labels'].filter((p) => (p === 'labels' ? Object.keys(input.labels ?? {}).length > 0 : Boolean(input[p as 'name' | 'type'])));
  for (const path of paths) v.check(UPDATABLE.has(path), 'update_mask', `cannot update ${JSON.stringify(path)}; updatable: name, type, labels`);
  v.check(effective.length > 0, 'update_mask', 'names no field to update');
  const patch: DevicePatch = {};
  if (effective.includes('name')) {
    checkName(input.name, 'device.name', v);
    patch.name = input.name?.trim();
  }
  if (effective.includes('type')) {
    checkType(input.type, 'device.type', v);
    patch.type = input.type ?? '';
  }
  if (effective.includes('labels')) {
    checkLabels(input.labels ?? {}, 'device.labels', v);
    patch.labels = input.labels ?? {};
  }
  return patch;
}
