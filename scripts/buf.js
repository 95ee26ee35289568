#!/usr/bin/env node
// Runs the buf CLI shipped by the @bufbuild/buf npm package (works offline).
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

/** Runs buf with the given arguments in the repository root; exits on failure. */
function runBuf(args) {
  const bin = require.resolve('@bufbuild/buf/bin/buf');
  const result = spawnSync(process.execPath, [bin, ...args], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`buf ${args.join(' ')} failed`);
    process.exit(result.status ?? 1);
  }
}

module.exports = { runBuf };

if (require.main === module) runBuf(process.argv.slice(2));
