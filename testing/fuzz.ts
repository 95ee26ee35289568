/*
 * Property-based fuzzing helpers (issue 13) over fast-check: one seed per
 * test file (printed, or taken from FUZZ_SEED), a failure that says how to
 * replay itself (seed and shrunk path, FUZZ_PATH), and a count of the cases
 * each property ran, printed when the file ends.
 */
import { DescEnum, DescField, DescMessage, ScalarType } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import fc from 'fast-check';

/** The seed of this run: FUZZ_SEED when set (to replay a failure), else a fresh one. */
export const fuzzSeed: number = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0;

/** The path of a failure to replay (FUZZ_PATH, printed with it), or undefined for a full run. */
const fuzzPath: string | undefined = process.env.FUZZ_PATH || undefined;

/**
 * Strings an attacker would send: every UTF-16 code unit (NUL, C0/C1
 * controls, lone surrogates, bidi overrides, BOM), wildcards and dots,
 * long runs, and names with meaning to JavaScript or to number parsers.
 */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('\u0000', '\u0007', '\t', '\n', '\r', '\u007f', '\u0085', '\ud800', '\udfff', '\ufeff', '\u202e', 'a', '.', '*', '>', '😀'), maxLength: 20 }),
  fc.integer({ min: 100, max: 400 }).map((n) => 'x'.repeat(n)),
  fc.constantFrom('', 'NaN', 'Infinity', '-Infinity', '1e400', '__proto__', 'constructor', 'temperature'),
);

/** Cases each property ran in this file, in the order they ran. */
const counts: { name: string; runs: number }[] = [];

/**
 * Runs a property with `numRuns` cases from {@link fuzzSeed} and records how
 * many ran. A failure throws fast-check's report prefixed with the command
 * line that replays exactly the shrunk counterexample.
 */
export async function fuzz<Ts>(name: string, property: fc.IProperty<Ts> | fc.IAsyncProperty<Ts>, numRuns: number): Promise<void> {
  const details = await fc.check(property as fc.IAsyncProperty<Ts>, { seed: fuzzSeed, path: fuzzPath, numRuns, endOnFailure: false });
  counts.push({ name, runs: details.numRuns });
  if (details.failed) {
    const replay = `FUZZ_SEED=${details.seed} FUZZ_PATH=${details.counterexamplePath ?? ''} npx jest ${relativeTestPath()} -t ${JSON.stringify(name)}`;
    const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance ?? '');
    throw new Error(`fuzz property "${name}" failed: ${cause.slice(0, 500)}\nreplay with:\n  ${replay}\n\n${(fc.defaultReportMessage(details) ?? '').slice(0, 2000)}`);
  }
}

/** The running jest test file, relative to the repository, for the replay line. */
function relativeTestPath(): string {
  const file = expect.getState().testPath ?? '';
  return file.replace(`${process.cwd()}/`, '');
}

/** Prints the cases each property of this file ran and their sum (call from afterAll). */
export function printFuzzCounts(file: string): void {
  const total = counts.reduce((sum, c) => sum + c.runs, 0);
  const width = Math.max(...counts.map((c) => c.name.length), 8);
  const lines = counts.map((c) => `  ${c.name.padEnd(width)}  ${String(c.runs).padStart(7)}`);
  console.log(`fuzz ${file} (seed ${fuzzSeed}${fuzzPath ? `, path ${fuzzPath}` : ''}):\n${lines.join('\n')}\n  ${'total'.padEnd(width)}  ${String(total).padStart(7)}`);
}


/** Strings long enough to find quadratic validators and size limits (tens of kB to 1 MiB), drawn rarely. */
export const hugeString: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom('a', '.', 'a@', '\u0000', '😀', 'a@.', '%'), fc.integer({ min: 10_000, max: 1 << 20 }))
  .map(([unit, length]) => (unit === 'a@.' ? `a@${'.'.repeat(length)}@` : unit.repeat(Math.ceil(length / unit.length))));

/** Integers at and around the edges of every protobuf integer type. */
const edgeIntegers: bigint[] = [0n, -1n, 1n, 127n, 128n, 255n, 256n, 65_535n, 2n ** 31n - 1n, -(2n ** 31n), 2n ** 32n - 1n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n];

const int64 = fc.oneof(fc.constantFrom(...edgeIntegers.filter((n) => n >= -(2n ** 63n) && n < 2n ** 63n)), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }));
const uint64 = fc.oneof(fc.constantFrom(...edgeIntegers.filter((n) => n >= 0n)), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
const int32 = fc.oneof(fc.constantFrom(0, -1, 1, 2 ** 31 - 1, -(2 ** 31)), fc.integer());
const uint32 = fc.oneof(fc.constantFrom(0, 1, 2 ** 32 - 1), fc.nat({ max: 2 ** 32 - 1 }));

/** One encoded field: its tag and value bytes, ready to concatenate into a message. */
type Encoded = Uint8Array;

function encode(write: (w: BinaryWriter) => void): Encoded {
  const writer = new BinaryWriter();
  write(writer);
  return writer.finish();
}

/** A value of a scalar type as it goes on the wire, without its tag. */
function scalarValue(scalar: ScalarType, huge = false): fc.Arbitrary<{ wire: WireType; write: (w: BinaryWriter) => void }> {
  const varint = (a: fc.Arbitrary<bigint | number>, put: (w: BinaryWriter, v: never) => void) => a.map((v) => ({ wire: WireType.Varint, write: (w: BinaryWriter) => put(w, v as never) }));
  switch (scalar) {
    case ScalarType.STRING:
      return fc
        .oneof(
          { weight: 30, arbitrary: hostileString.map((s) => (w: BinaryWriter) => w.string(s)) },
          // Bytes that are not UTF-8 at all where a string belongs.
          { weight: 3, arbitrary: fc.uint8Array({ maxLength: 40 }).map((b) => (w: BinaryWriter) => w.bytes(b)) },
          // Huge strings only where they stand alone: a list of them would only test the message size limit.
          ...(huge ? [{ weight: 1, arbitrary: hugeString.map((s) => (w: BinaryWriter) => w.string(s)) }] : []),
        )
        .map((write) => ({ wire: WireType.LengthDelimited, write }));
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 300 }).map((b) => ({ wire: WireType.LengthDelimited, write: (w: BinaryWriter) => w.bytes(b) }));
    case ScalarType.BOOL:
      // Any varint where a bool belongs, not only 0 and 1.
      return varint(fc.oneof(fc.constantFrom(0n, 1n), uint64), (w, v: bigint) => w.uint64(v));
    case ScalarType.INT32:
    case ScalarType.INT64:
    case ScalarType.UINT32:
    case ScalarType.UINT64:
      // A 64-bit varint fits every varint type: decoders truncate, validators must cope with what comes out.
      return varint(fc.oneof(int32.map(BigInt), int64, uint64), (w, v: bigint) => w.uint64(BigInt.asUintN(64, v)));
    case ScalarType.SINT32:
      return varint(int32, (w, v: number) => w.sint32(v));
    case ScalarType.SINT64:
      return varint(int64, (w, v: bigint) => w.sint64(v));
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
    case ScalarType.FLOAT:
      return fc.oneof(uint32.map((v) => (w: BinaryWriter) => w.fixed32(v)), fc.float().map((v) => (w: BinaryWriter) => w.float(v))).map((write) => ({ wire: WireType.Bit32, write }));
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
    case ScalarType.DOUBLE:
      return fc
        .oneof(uint64.map((v) => (w: BinaryWriter) => w.fixed64(v)), fc.double().map((v) => (w: BinaryWriter) => w.double(v)))
        .map((write) => ({ wire: WireType.Bit64, write }));
  }
}

/** Any enum number: the declared ones, unknown ones, negative ones. */
function enumValue(desc: DescEnum): fc.Arbitrary<{ wire: WireType; write: (w: BinaryWriter) => void }> {
  return fc
    .oneof(fc.constantFrom(...desc.values.map((v) => v.number)), int32)
    .map((n) => ({ wire: WireType.Varint, write: (w: BinaryWriter) => w.int32(n) }));
}

/** A `google.protobuf.Value` nested `depth` times through `list_value` (6) → `values` (1): deep nesting a recursive decoder must survive. */
function deepValue(depth: number): Uint8Array {
  let inner = encode((w) => w.tag(3, WireType.LengthDelimited).string('deep')); // string_value
  for (let i = 0; i < depth; i++) {
    const list = encode((w) => w.tag(1, WireType.LengthDelimited).bytes(inner));
    inner = encode((w) => w.tag(6, WireType.LengthDelimited).bytes(list));
  }
  return inner;
}

type Valued = fc.Arbitrary<{ wire: WireType; write: (w: BinaryWriter) => void }>;

function messageValue(desc: DescMessage, depth: number, known: KnownValues): Valued {
  const nested: fc.Arbitrary<Uint8Array> =
    desc.typeName === 'google.protobuf.Value'
      ? fc.oneof({ weight: 6, arbitrary: wireMessage(desc, depth - 1, known, false) }, { weight: 1, arbitrary: fc.integer({ min: 10, max: 3000 }).map(deepValue) })
      : wireMessage(desc, depth - 1, known, false);
  return nested.map((bytes) => ({ wire: WireType.LengthDelimited, write: (w: BinaryWriter) => w.bytes(bytes) }));
}

/** The value of one (singular) field of `kind`, without tag. */
function singleValue(field: DescField, depth: number, known: KnownValues): Valued {
  const named = known[field.name];
  const pick = (): Valued => {
    if (field.fieldKind === 'scalar' || (field.fieldKind === 'list' && field.listKind === 'scalar')) return scalarValue(field.scalar!, field.fieldKind === 'scalar');
    if (field.fieldKind === 'enum' || (field.fieldKind === 'list' && field.listKind === 'enum')) return enumValue(field.enum!);
    return messageValue(field.message!, depth, known);
  };
  const value = pick();
  // Fields naming resources the caller owns sometimes carry one, so validation past the lookup is reached too.
  return named && named.length > 0 && (field.fieldKind === 'scalar' || field.fieldKind === 'list')
    ? fc.oneof({ weight: 2, arbitrary: value }, { weight: 1, arbitrary: fc.constantFrom(...named).map((s) => ({ wire: WireType.LengthDelimited, write: (w: BinaryWriter) => w.string(s) })) })
    : value;
}

/**
 * Every occurrence of one field in a message: absent, once, repeated (also for singular fields: the last one wins),
 * or as a map. Big lists and maps only in the request itself (`top`): nested in each other they multiply.
 */
function fieldOccurrences(field: DescField, depth: number, known: KnownValues, top: boolean): fc.Arbitrary<Encoded[]> {
  const tagged = (v: { wire: WireType; write: (w: BinaryWriter) => void }) => encode((w) => v.write(w.tag(field.number, v.wire)));
  if (field.fieldKind === 'map') {
    const key = scalarValue(field.mapKey);
    const value: Valued = field.mapKind === 'scalar' ? scalarValue(field.scalar!) : field.mapKind === 'enum' ? enumValue(field.enum!) : messageValue(field.message!, depth, known);
    const entry = fc.tuple(key, value).map(([k, v]) => {
      const bytes = encode((w) => {
        k.write(w.tag(1, k.wire));
        v.write(w.tag(2, v.wire));
      });
      return encode((w) => w.tag(field.number, WireType.LengthDelimited).bytes(bytes));
    });
    return top ? fc.oneof({ weight: 4, arbitrary: fc.array(entry, { maxLength: 4 }) }, { weight: 1, arbitrary: fc.array(entry, { minLength: 50, maxLength: 300 }) }) : fc.array(entry, { maxLength: 3 });
  }
  const one = singleValue(field, depth, known).map(tagged);
  if (field.fieldKind === 'list') {
    return top ? fc.oneof({ weight: 4, arbitrary: fc.array(one, { maxLength: 5 }) }, { weight: 1, arbitrary: fc.array(one, { minLength: 100, maxLength: 2000 }) }) : fc.array(one, { maxLength: 3 });
  }
  return fc.oneof({ weight: 1, arbitrary: fc.constant<Encoded[]>([]) }, { weight: 4, arbitrary: one.map((e) => [e]) }, { weight: 1, arbitrary: fc.array(one, { minLength: 2, maxLength: 3 }) });
}

/** Values the generator sometimes puts in fields of a given proto name (`device_id` → the caller's device). */
export type KnownValues = Record<string, readonly string[]>;

/**
 * Any wire encoding of a request of `desc`: every field (oneof members
 * independently) absent, present or repeated with values of its type at the
 * edges (hostile and huge strings, invalid UTF-8, 64-bit varints in 32-bit
 * fields, unknown and negative enum numbers, deep `google.protobuf.Value`
 * nesting, big lists and maps), plus unknown fields, fields sent with the
 * wrong wire type, truncated messages and plain random bytes.
 */
export function wireMessage(desc: DescMessage, depth = 3, known: KnownValues = {}, top = true): fc.Arbitrary<Uint8Array> {
  if (depth < 0) return fc.constant(new Uint8Array(0));
  const fields = desc.fields.map((f) => fieldOccurrences(f, depth, known, top));
  const wellFormed = fc.tuple(...fields).map((chunks) => concat(chunks.flat()));
  const wrongWireType = fc.tuple(fc.constantFrom(...(desc.fields.length > 0 ? desc.fields.map((f) => f.number) : [1])), fc.uint8Array({ maxLength: 12 }), fc.constantFrom(WireType.Varint, WireType.Bit64, WireType.LengthDelimited, WireType.Bit32));
  return fc.oneof(
    { weight: 12, arbitrary: wellFormed },
    {
      weight: 2,
      arbitrary: fc.tuple(wellFormed, fc.integer({ min: 1, max: 536_870_911 }), fc.uint8Array({ maxLength: 20 })).map(([body, no, bytes]) => concat([body, encode((w) => w.tag(no, WireType.LengthDelimited).bytes(bytes))])),
    },
    {
      weight: 1,
      arbitrary: wrongWireType.map(([no, bytes, wire]) => encode((w) => {
        w.tag(no, wire);
        if (wire === WireType.Varint) w.uint64(BigInt(bytes.length));
        else if (wire === WireType.Bit64) w.fixed64(BigInt(bytes.length));
        else if (wire === WireType.Bit32) w.fixed32(bytes.length);
        else w.bytes(bytes);
      })),
    },
    { weight: 1, arbitrary: wellFormed.chain((body) => fc.nat({ max: Math.max(0, body.length - 1) }).map((cut) => body.subarray(0, cut))) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  );
}

function concat(chunks: Uint8Array[]): Uint8Array {
  return Buffer.concat(chunks);
}
