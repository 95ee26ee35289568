import { isCelError, isCelList, isCelMap, isCelUint, parse, plan, celEnv, type CelValue } from '@bufbuild/cel';
import type { SampleValue } from '../store/telemetry-store';

/** What a rule's expressions see of one telemetry message. */
export interface RuleInput {
  /** Metric → value of the message's points (the last point of a metric when it repeats). */
  points: Map<string, SampleValue>;
  device: { id: string; type: string; labels: Record<string, string> };
  /** How many rule derivations produced this message (0 for a device's own). */
  depth: number;
}

/** A compiled CEL expression: evaluation gives a value or the reason it could not. */
export type CompiledExpression = (input: RuleInput) => { value: CelValue } | { error: string };

const env = celEnv();

/** The plain JS value of a point, as CEL sees it (numbers are CEL doubles). */
function celValue(v: SampleValue): number | boolean | string {
  return v.number ?? v.bool ?? v.string ?? '';
}

/** The CEL variables of an input: `m`, `device`, `depth`. */
function bindings(input: RuleInput) {
  const m = new Map<string, number | boolean | string>();
  for (const [metric, value] of input.points) m.set(metric, celValue(value));
  const device = new Map<string, unknown>([
    ['id', input.device.id],
    ['type', input.device.type],
    ['labels', new Map(Object.entries(input.device.labels))],
  ]);
  return { m, device, depth: BigInt(input.depth) };
}

/**
 * Compiles a CEL expression once (parsing and planning), so evaluation per
 * message is only the plan's walk. Returns the parse error instead when the
 * text is not CEL.
 */
export function compileExpression(text: string): CompiledExpression | { parseError: string } {
  let program: ReturnType<typeof plan>;
  try {
    program = plan(env, parse(text));
  } catch (err) {
    return { parseError: (err as Error).message };
  }
  return (input) => {
    let result: ReturnType<typeof program>;
    try {
      result = program(bindings(input) as never);
    } catch (err) {
      return { error: (err as Error).message };
    }
    if (isCelError(result)) return { error: result.message };
    return { value: result };
  };
}

/** A CEL result as a point value; undefined when it is not a number, bool or string. */
export function sampleOf(value: CelValue): SampleValue | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? { number: value } : undefined;
  if (typeof value === 'bigint') return { number: Number(value) };
  if (isCelUint(value)) return { number: Number(value.value) };
  if (typeof value === 'boolean') return { bool: value };
  if (typeof value === 'string') return { string: value };
  return undefined;
}

/** A short description of a CEL value's type, for error messages. */
export function celTypeName(value: CelValue): string {
  if (value === null) return 'null';
  if (isCelList(value)) return 'list';
  if (isCelMap(value)) return 'map';
  return typeof value;
}
