#!/usr/bin/env node
// `buf breaking` of the working tree's contracts against main's, offline.
//
// What "main's" means (the first that applies):
//   1. a ref given as the first argument or in BUF_BREAKING_AGAINST;
//   2. on a branch: the merge base with main (`git merge-base HEAD origin/main`
//      when the remote exists, else with the local `main`), so everything the
//      branch changed is checked, however many commits it has;
//   3. on main itself (a developer's checkout, or CI's clean clone, where the
//      merge base is HEAD): HEAD when the working tree changes proto/ or
//      buf.yaml; otherwise the parent of the last commit that touched them, so
//      the latest contract change is checked (comparing HEAD with itself would
//      check nothing).
// It fails when that commit's contracts do not build (a comparison that cannot
// be made is not a pass), when the named ref does not exist, and in a shallow
// clone whose history stops before it; it skips only where history has no
// earlier contracts at all.
//
// Why not `buf breaking --against '.git#ref=...'`: buf.yaml has a second
// module, gen/proto-deps (google/api, google/rpc and grpc protos copied from
// npm packages by `npm run generate`), which is never committed, so that git
// input cannot build. Instead the old commit's buf.yaml and proto/ are
// extracted to a temporary folder, today's gen/proto-deps is placed beside
// them, the old contracts are built, and today's workspace is checked against
// them.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const buf = require.resolve('@bufbuild/buf/bin/buf');
const CONTRACTS = ['buf.yaml', 'proto'];

/** Runs git in the repository; returns trimmed stdout, or undefined when git fails. */
function git(args, options = {}) {
  try {
    return execFileSync('git', args, { cwd: root, stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 256 * 1024 * 1024, ...options });
  } catch {
    return undefined;
  }
}
const gitText = (args) => git(args)?.toString().trim() || undefined;
const resolveCommit = (ref) => gitText(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`]);

function fail(message) {
  console.error(`buf breaking: ${message}`);
  process.exit(1);
}

function runBuf(args, cwd, stdio = 'inherit') {
  const result = spawnSync(process.execPath, [buf, ...args], { cwd, stdio });
  return result.status ?? 1;
}

const shallowHint = () => (gitText(['rev-parse', '--is-shallow-repository']) === 'true' ? ' (shallow clone: run `git fetch --unshallow`)' : '');

/** The commit to compare against and how it was chosen; exits when there is none. */
function chooseAgainst() {
  const named = process.argv[2] || process.env.BUF_BREAKING_AGAINST;
  if (named) {
    const commit = resolveCommit(named);
    if (!commit) fail(`no commit ${named}${shallowHint()}`);
    return { commit, label: named };
  }
  const head = resolveCommit('HEAD');
  if (!head) {
    console.log('buf breaking: no commit yet; skipped');
    process.exit(0);
  }
  for (const main of ['origin/main', 'main']) {
    if (!resolveCommit(main)) continue;
    const base = gitText(['merge-base', 'HEAD', main]);
    if (!base) fail(`HEAD and ${main} have no merge base${shallowHint()}`);
    if (base !== head) return { commit: base, label: `the merge base with ${main}` };
    break;
  }
  if (gitText(['status', '--porcelain', '--', ...CONTRACTS])) return { commit: head, label: 'HEAD (the working tree changes the contracts)' };
  const last = gitText(['log', '-1', '--format=%H', 'HEAD', '--', ...CONTRACTS]);
  if (!last) {
    console.log('buf breaking: no commit has contracts yet; skipped');
    process.exit(0);
  }
  const parent = resolveCommit(`${last}^`);
  if (!parent) {
    if (shallowHint()) fail(`the parent of ${last.slice(0, 12)}, the last commit touching the contracts, is not in this clone${shallowHint()}`);
    console.log(`buf breaking: ${last.slice(0, 12)}, the last commit touching the contracts, is the first commit: no earlier contracts; skipped`);
    process.exit(0);
  }
  return { commit: parent, label: `the parent of ${last.slice(0, 12)} (the last commit touching the contracts)` };
}

const { commit, label } = chooseAgainst();
const against = `${label} (${commit.slice(0, 12)})`;
if (!git(['cat-file', '-e', `${commit}:buf.yaml`]) || !git(['cat-file', '-e', `${commit}:proto`])) {
  console.log(`buf breaking: ${against} has no buf.yaml and proto/: no earlier contracts; skipped`);
  process.exit(0);
}
const deps = path.join(root, 'gen', 'proto-deps');
if (!fs.existsSync(deps)) fail('gen/proto-deps is missing: run `npm run generate` first');

const archive = git(['archive', '--format=tar', commit, ...CONTRACTS]);
if (!archive) fail(`cannot read the contracts of ${against}`);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-buf-against-'));
let status = 1;
try {
  execFileSync('tar', ['-x', '-C', dir], { input: archive });
  fs.cpSync(deps, path.join(dir, 'gen', 'proto-deps'), { recursive: true });
  if (runBuf(['build', '-o', os.devNull], dir) !== 0) {
    console.error(
      `buf breaking: the contracts of ${against} do not build (errors above), so nothing was compared. ` +
        'Name a commit whose contracts build with BUF_BREAKING_AGAINST=<ref> once you know why.',
    );
  } else {
    status = runBuf(['breaking', '--against', dir], root);
    if (status !== 0) console.error(`buf breaking: proto/ has breaking changes against ${against}; make the change additive`);
    else console.log(`buf breaking: no breaking changes against ${against}`);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
