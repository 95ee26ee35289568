import Ajv, { ErrorObject, ValidateFunction } from 'ajv';
import type { FieldViolation } from '@iot-mesh/runtime';
import { JsonObject } from './model';

/** Largest JSON Schema a device type may carry, as UTF-8 JSON. */
export const SCHEMA_LIMIT = 32 * 1024;
/** Compiled schemas kept; past this the cache starts over (types change rarely). */
const CACHE_LIMIT = 1000;

/**
 * JSON Schema (draft-07) validation of device-type documents with ajv: the
 * schemas a type declares are compiled once (when the type is written, so a
 * bad schema is refused there) and cached by their text.
 */
export class SchemaValidator {
  private readonly ajv = new Ajv({ allErrors: true, strict: true });
  private readonly compiled = new Map<string, ValidateFunction>();

  /** Why `schema` is not a usable JSON Schema; undefined when it is. */
  problem(schema: JsonObject): string | undefined {
    if (Buffer.byteLength(JSON.stringify(schema), 'utf8') > SCHEMA_LIMIT) return `must be at most ${SCHEMA_LIMIT} bytes as JSON`;
    try {
      this.compile(schema);
      return undefined;
    } catch (err) {
      return `is not a valid JSON Schema: ${(err as Error).message}`;
    }
  }

  /** Field violations of `doc` against `schema`, each field prefixed with `field` (`desired`, `payload`). */
  violations(schema: JsonObject, doc: unknown, field: string): FieldViolation[] {
    const validate = this.compile(schema);
    if (validate(doc)) return [];
    return (validate.errors ?? []).map((e) => toViolation(e, field));
  }

  private compile(schema: JsonObject): ValidateFunction {
    const key = JSON.stringify(schema);
    let validate = this.compiled.get(key);
    if (!validate) {
      if (this.compiled.size >= CACHE_LIMIT) this.compiled.clear();
      validate = this.ajv.compile(schema);
      // ajv keeps every schema it compiled; the cache above is the only copy wanted.
      this.ajv.removeSchema(schema);
      this.compiled.set(key, validate);
    }
    return validate;
  }
}

/** One ajv error as a field violation: `/a/0/b` under `desired` is `desired.a[0].b`. */
function toViolation(e: ErrorObject, field: string): FieldViolation {
  let path = field;
  for (const part of e.instancePath.split('/').slice(1)) {
    const token = part.replace(/~1/g, '/').replace(/~0/g, '~');
    path += /^\d+$/.test(token) ? `[${token}]` : `.${token}`;
  }
  if (e.keyword === 'required') path += `.${(e.params as { missingProperty: string }).missingProperty}`;
  if (e.keyword === 'additionalProperties') path += `.${(e.params as { additionalProperty: string }).additionalProperty}`;
  return { field: path, description: e.message ?? `fails ${e.keyword}` };
}
