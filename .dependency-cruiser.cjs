/**
 * The repository's dependency rules, checked by dependency-cruiser (`npm run lint:deps`, and
 * scripts/test/dependency-rules.test.ts so CI fails on a violation).
 *
 * The layers: `packages/*` (the runtime and nats-auth) know nothing of any service; each service under
 * `services/*` knows nothing of the others; everything else (gateway, bench, simulator, scripts, testing)
 * reaches a workspace package only through its name and its `exports` map. The exported files are read
 * from each workspace's package.json, so adding an export there is the one place that widens a surface.
 *
 * Paths are relative to the working directory, so the same rules run over a fixture tree in the test.
 */
const fs = require('node:fs');
const path = require('node:path');

/** Escapes a path for use inside a regular expression. */
const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Every workspace package under packages/ and services/ with the files its exports map points at. */
function workspacePackages(root) {
  const found = [];
  for (const group of ['packages', 'services']) {
    const groupDir = path.join(root, group);
    if (!fs.existsSync(groupDir)) continue;
    for (const name of fs.readdirSync(groupDir).sort()) {
      const manifestPath = path.join(groupDir, name, 'package.json');
      if (!fs.existsSync(manifestPath)) continue;
      const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
      const targets = Object.values(manifest.exports ?? { '.': manifest.main ?? './index.js' })
        .flatMap((target) => (typeof target === 'string' ? [target] : Object.values(target)))
        .map((target) => path.posix.join(group, name, target));
      found.push({ name: manifest.name, dir: `${group}/${name}`, exported: targets });
    }
  }
  return found;
}

const workspaces = workspacePackages(process.cwd());

/** The package's name without its scope, for rule names (`@iot-mesh/runtime` → `runtime`). */
const shortName = (pkg) => pkg.name.replace(/^@[^/]+\//, '');

/**
 * Where an import into `pkg` is checked from: anywhere but the package itself. Edges from a service to
 * another service, or from a shared package to a service, fail their own rule instead, once.
 */
const outsideOf = (pkg) =>
  pkg.dir.startsWith('services/') ? `^(${escape(pkg.dir)}/|services/|packages/)` : `^${escape(pkg.dir)}/`;

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'service-imports-service',
      severity: 'error',
      comment:
        'A service never imports another service (not even its entry): they talk over gRPC and NATS. ' +
        'What two services share belongs in packages/.',
      from: { path: '^services/([^/]+)/' },
      to: { path: '^services/', pathNot: '^services/$1/' },
    },
    {
      name: 'package-imports-service',
      severity: 'error',
      comment:
        'The shared packages (runtime, nats-auth) know nothing of any one service: service-specific code ' +
        'lives in its service.',
      from: { path: '^packages/' },
      to: { path: '^services/' },
    },
    ...workspaces.map((pkg) => ({
      name: `past-entry-${shortName(pkg)}`,
      severity: 'error',
      comment:
        `${pkg.name} is imported only through its exports map (${pkg.exported.join(', ')}); ` +
        'everything else is its private inside' +
        (pkg.dir.startsWith('services/') ? ' (gateway, bench, simulator, scripts and testing included).' : '.'),
      from: { pathNot: outsideOf(pkg) },
      to: { path: `^${escape(pkg.dir)}/`, pathNot: pkg.exported.map((file) => `^${escape(file)}$`) },
    })),
    ...workspaces.map((pkg) => ({
      name: `relative-into-${shortName(pkg)}`,
      severity: 'error',
      comment: `A relative path climbs into ${pkg.dir}; import it by its name, ${pkg.name}.`,
      from: { pathNot: outsideOf(pkg) },
      // A workspace import can also be typed 'local'; 'aliased' is what tells it from a relative path.
      to: {
        path: pkg.exported.map((file) => `^${escape(file)}$`),
        dependencyTypes: ['local'],
        dependencyTypesNot: ['aliased'],
      },
    })),
    {
      name: 'past-exports-map',
      severity: 'error',
      comment:
        "A subpath of a workspace package that its exports map does not offer (it cannot resolve, so it " +
        'would fail to type-check under node16 resolution too).',
      from: {},
      to: { couldNotResolve: true, path: '^@iot-mesh/' },
    },
  ],
  options: {
    doNotFollow: { path: ['node_modules', '^gen/'] },
    exclude: { path: ['node_modules', '^gen/', '(^|/)dist/', '^gateway/web/dist/'] },
    // Type-only imports count: under node16 resolution they fail to type-check past an exports map too.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    combinedDependencies: false,
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.tsx', '.js', '.cjs', '.mjs', '.json', '.d.ts'],
      mainFields: ['main', 'types'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
