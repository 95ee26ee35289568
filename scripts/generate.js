#!/usr/bin/env node
// Regenerates everything derived from proto/: TypeScript (ts-proto, grpc-js
// services) under gen/ts and the descriptor set gen/iot.binpb. Offline and
// reproducible; gen/ is never committed or edited by hand.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { runBuf } = require('./buf.js');

const root = path.resolve(__dirname, '..');
const deps = path.join(root, 'gen', 'proto-deps');
const googleProtos = path.dirname(require.resolve('google-proto-files/package.json'));

/** Third-party protos our contracts import, taken from the npm package at generate time. */
const THIRD_PARTY = [
  'google/api/annotations.proto',
  'google/api/http.proto',
  'google/api/httpbody.proto',
  'google/api/field_behavior.proto',
  'google/rpc/status.proto',
  'google/rpc/code.proto',
  'google/rpc/error_details.proto',
];

fs.rmSync(deps, { recursive: true, force: true });
for (const file of THIRD_PARTY) {
  fs.mkdirSync(path.dirname(path.join(deps, file)), { recursive: true });
  fs.copyFileSync(path.join(googleProtos, file), path.join(deps, file));
}

runBuf(['generate']);
runBuf(['build', '-o', 'gen/iot.binpb']);

// The Envoy config is derived from the descriptor set and committed; keep it
// in step. CI leaves the committed file alone so gateway/test/envoy-config.test.ts
// fails when someone changed a proto without committing the regenerated config.
if (process.env.CI === 'true') {
  console.log('CI: gateway/envoy/envoy.tmpl.yaml left as committed (the envoy-config test checks it is current)');
} else {
  const envoy = require('node:child_process').spawnSync(process.execPath, ['--import', 'tsx', 'gateway/envoy/generate.ts'], { cwd: root, stdio: 'inherit' });
  if (envoy.status !== 0) process.exit(envoy.status ?? 1);
}
