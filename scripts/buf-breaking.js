#!/usr/bin/env node
// `buf breaking` against an earlier commit (default HEAD~1; BUF_BREAKING_AGAINST
// or the first argument names another ref), offline.
//
// Why not `buf breaking --against '.git#ref=HEAD~1'`: buf.yaml has a second
// module, gen/proto-deps (google/api and google/rpc protos copied from the
// google-proto-files npm package by `npm run generate`), which is never
// committed, so that git input cannot build. Instead the old commit's buf.yaml
// and proto/ are extracted to a temporary folder, today's gen/proto-deps (the
// same third-party files) is placed beside them, the old contracts are built
// into an image, and today's workspace is checked against that image.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const buf = require.resolve('@bufbuild/buf/bin/buf');
const ref = process.argv[2] || process.env.BUF_BREAKING_AGAINST || 'HEAD~1';

/** Runs git in the repository; returns stdout, or undefined when git fails. */
function git(args, options = {}) {
  try {
    return execFileSync('git', args, { cwd: root, stdio: ['ignore', 'pipe', 'ignore'], ...options });
  } catch {
    return undefined;
  }
}

function runBuf(args, cwd, stdio = 'inherit') {
  const result = spawnSync(process.execPath, [buf, ...args], { cwd, stdio });
  return result.status ?? 1;
}

const commit = git(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`])?.toString().trim();
if (!commit) {
  console.log(`buf breaking: no commit ${ref} (first commit or shallow clone); skipped`);
  process.exit(0);
}
if (!git(['cat-file', '-e', `${commit}:buf.yaml`]) || !git(['cat-file', '-e', `${commit}:proto`])) {
  console.log(`buf breaking: ${ref} (${commit.slice(0, 12)}) has no buf.yaml and proto/; skipped`);
  process.exit(0);
}
const deps = path.join(root, 'gen', 'proto-deps');
if (!fs.existsSync(deps)) {
  console.error('buf breaking: gen/proto-deps is missing: run `npm run generate` first');
  process.exit(1);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-buf-against-'));
try {
  const archive = git(['archive', '--format=tar', commit, 'buf.yaml', 'proto'], { maxBuffer: 256 * 1024 * 1024 });
  execFileSync('tar', ['-x', '-C', dir], { input: archive });
  fs.cpSync(deps, path.join(dir, 'gen', 'proto-deps'), { recursive: true });
  // Old contracts that do not build leave nothing to compare against; that is
  // not a fault of the current tree, so say so and skip.
  if (runBuf(['build', '-o', os.devNull], dir, 'ignore') !== 0) {
    console.log(`buf breaking: the contracts of ${ref} (${commit.slice(0, 12)}) do not build; skipped`);
    process.exit(0);
  }
  const status = runBuf(['breaking', '--against', dir], root);
  if (status !== 0) {
    console.error(`buf breaking: proto/ has breaking changes against ${ref} (${commit.slice(0, 12)}); make the change additive`);
    process.exit(status);
  }
  console.log(`buf breaking: no breaking changes against ${ref} (${commit.slice(0, 12)})`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
