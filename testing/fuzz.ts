/*
 * Property-based fuzzing helpers (issue 13) over fast-check: one seed per
 * test file (printed, or taken from FUZZ_SEED), a failure that says how to
 * replay itself (seed and shrunk path, FUZZ_PATH), and a count of the cases
 * each property ran, printed when the file ends.
 */
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
    throw new Error(`fuzz property "${name}" failed; replay with:\n  ${replay}\n\n${fc.defaultReportMessage(details)}`);
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

