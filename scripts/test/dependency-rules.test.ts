import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

/**
 * The dependency rules of .dependency-cruiser.cjs, run by the tool itself: once over the repository (CI fails
 * on any violation, each printed with its rule and reason), and once over a small fixture tree that breaks
 * every rule once, so a rule that silently stopped matching fails here too.
 */

const repoRoot = join(__dirname, '..', '..');
const config = join(repoRoot, '.dependency-cruiser.cjs');
const cli = join(repoRoot, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');
/** The folders `npm run lint:deps` cruises (kept equal to it by a test below). */
const CRUISED = ['packages', 'services', 'gateway', 'bench', 'simulator', 'scripts', 'testing'];

interface Violation {
  rule: string;
  from: string;
  to: string;
  comment: string;
}

/** Runs dependency-cruiser with the repository's rules in `cwd` and returns the violations it found. */
async function cruise(cwd: string, folders: string[]): Promise<Violation[]> {
  const args = [cli, '--config', config, '--output-type', 'json', ...folders];
  // The CLI exits non-zero when it finds a violation; the report on stdout is what counts.
  const { stdout } = await promisify(execFile)(process.execPath, args, { cwd, maxBuffer: 256 * 1024 * 1024 }).catch(
    (error: { stdout?: string; stderr?: string; message: string }) => {
      if (!error.stdout) throw new Error(`dependency-cruiser failed: ${error.stderr || error.message}`);
      return { stdout: error.stdout };
    },
  );
  const report = JSON.parse(stdout) as {
    summary: { violations: { from: string; to: string; rule: { name: string } }[] };
  };
  const comments = new Map<string, string>(
    (require(config).forbidden as { name: string; comment: string }[]).map((rule) => [rule.name, rule.comment]),
  );
  return report.summary.violations.map((violation) => ({
    rule: violation.rule.name,
    from: violation.from,
    to: violation.to,
    comment: comments.get(violation.rule.name) ?? '',
  }));
}

/** One line per violation, grouped so a reader sees at once which file breaks which rule and why. */
function formatViolations(violations: Violation[]): string {
  return violations
    .map((violation) => `  ${violation.rule}: ${violation.from} → ${violation.to}\n      ${violation.comment}`)
    .join('\n');
}

/** Writes `files` (path → content) under `root`, creating folders as needed. */
function writeTree(root: string, files: Record<string, string>): void {
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, file)), { recursive: true });
    writeFileSync(join(root, file), content);
  }
}

/** A workspace package.json with the given exports map. */
const manifest = (name: string, exports: Record<string, string>) =>
  JSON.stringify({ name, version: '0.0.0', private: true, exports });

describe('dependency rules', () => {
  test('the repository keeps every dependency rule', async () => {
    const violations = await cruise(repoRoot, CRUISED);
    if (violations.length > 0) {
      throw new Error(`${violations.length} dependency rule violation(s):\n${formatViolations(violations)}`);
    }
    expect(violations).toEqual([]);
  }, 120_000);

  test('npm run lint:deps cruises the same folders as this test', () => {
    const script: string = require(join(repoRoot, 'package.json')).scripts['lint:deps'];
    expect(script.split(' ').slice(-CRUISED.length)).toEqual(CRUISED);
  });

  describe('on a tree that breaks each rule once', () => {
    let root: string;

    beforeAll(() => {
      root = mkdtempSync(join(tmpdir(), 'dependency-rules-'));
      writeTree(root, {
        'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'node16', moduleResolution: 'node16' } }),
        'packages/runtime/package.json': manifest('@iot-mesh/runtime', {
          '.': './src/index.ts',
          './tracing-entry': './src/observability/tracing-entry.ts',
        }),
        // The runtime importing a service, and climbing into nats-auth by a relative path.
        'packages/runtime/src/index.ts':
          "import { a } from '@iot-mesh/alpha';\nimport { auth } from '../../nats-auth/src/index';\n" +
          "import { inner } from './internal';\nexport const runtime = [a, auth, inner];\n",
        'packages/runtime/src/internal.ts': 'export const inner = 1;\n',
        'packages/runtime/src/observability/tracing-entry.ts': 'export const tracing = 1;\n',
        'packages/nats-auth/package.json': manifest('@iot-mesh/nats-auth', { '.': './src/index.ts' }),
        'packages/nats-auth/src/index.ts': "import { runtime } from '@iot-mesh/runtime';\nexport const auth = runtime;\n",
        'services/alpha/package.json': manifest('@iot-mesh/alpha', { '.': './src/main.ts' }),
        // A service importing another service, once by name and once by a relative path into its inside.
        'services/alpha/src/main.ts':
          "import { b } from '@iot-mesh/beta';\nimport { store } from '../../beta/src/store/store';\n" +
          "import { runtime } from '@iot-mesh/runtime';\nexport const a = [b, store, runtime];\n",
        'services/alpha/src/store/rows.ts': 'export const rows = 1;\n',
        'services/alpha/test/rows.test.ts': "import { rows } from '../src/store/rows';\nexport const seen = rows;\n",
        'services/beta/package.json': manifest('@iot-mesh/beta', {
          '.': './src/main.ts',
          './test-harness': './test/harness.ts',
        }),
        'services/beta/src/main.ts': 'export const b = 1;\n',
        'services/beta/src/store/store.ts': 'export const store = 1;\n',
        'services/beta/test/harness.ts': "import { b } from '../src/main';\nexport const harness = b;\n",
        // Outside the packages: a service's inside, a relative path to an entry, a subpath past an exports map.
        'bench/history.ts': "import { rows } from '../services/alpha/src/store/rows';\nexport const h = rows;\n",
        'gateway/main.ts': "import { runtime } from '../packages/runtime/src/index';\nexport const g = runtime;\n",
        'scripts/up.ts': "import { inner } from '@iot-mesh/runtime/src/internal';\nexport const u = inner;\n",
        // Everything a package exports may be imported by name.
        'testing/allowed.ts':
          "import { runtime } from '@iot-mesh/runtime';\nimport { tracing } from '@iot-mesh/runtime/tracing-entry';\n" +
          "import { harness } from '@iot-mesh/beta/test-harness';\nimport { b } from '@iot-mesh/beta';\n" +
          'export const all = [runtime, tracing, harness, b];\n',
      });
      mkdirSync(join(root, 'node_modules', '@iot-mesh'), { recursive: true });
      for (const [name, dir] of [
        ['runtime', 'packages/runtime'],
        ['nats-auth', 'packages/nats-auth'],
        ['alpha', 'services/alpha'],
        ['beta', 'services/beta'],
      ]) {
        symlinkSync(join(root, dir), join(root, 'node_modules', '@iot-mesh', name), 'dir');
      }
    });

    afterAll(() => rmSync(root, { recursive: true, force: true }));

    test('each rule reports exactly the edge that breaks it', async () => {
      const violations = await cruise(root, ['packages', 'services', 'gateway', 'bench', 'scripts', 'testing']);
      const found = violations.map(({ rule, from, to }) => `${rule}: ${from} → ${to}`).sort();
      expect(found).toEqual(
        [
          'package-imports-service: packages/runtime/src/index.ts → services/alpha/src/main.ts',
          'relative-into-nats-auth: packages/runtime/src/index.ts → packages/nats-auth/src/index.ts',
          'service-imports-service: services/alpha/src/main.ts → services/beta/src/main.ts',
          'service-imports-service: services/alpha/src/main.ts → services/beta/src/store/store.ts',
          'past-entry-alpha: bench/history.ts → services/alpha/src/store/rows.ts',
          'relative-into-runtime: gateway/main.ts → packages/runtime/src/index.ts',
          'past-exports-map: scripts/up.ts → @iot-mesh/runtime/src/internal',
        ].sort(),
      );
    }, 120_000);
  });
});
