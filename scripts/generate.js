#!/usr/bin/env node
// Regenerates everything derived from proto/: TypeScript (ts-proto, grpc-js
// services) under gen/ts and the descriptor set gen/iot.binpb (every file with
// its imports, the well-known types, and grpc.health.v1 / grpc.reflection
// themselves: servers serve reflection from it as built). Offline and
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

/**
 * The protos of the services every server carries besides its own, under
 * their canonical names, so the descriptor set (and so server reflection,
 * which serves it as built) resolves them too: from the npm packages that
 * implement them.
 */
const GRPC_PROTOS = {
  'grpc/health/v1/health.proto': path.join(path.dirname(require.resolve('grpc-health-check/package.json')), 'proto', 'health', 'v1', 'health.proto'),
  'grpc/reflection/v1/reflection.proto': path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto'),
  'grpc/reflection/v1alpha/reflection.proto': path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1alpha', 'reflection.proto'),
};

fs.rmSync(deps, { recursive: true, force: true });
const copies = [...THIRD_PARTY.map((file) => [file, path.join(googleProtos, file)]), ...Object.entries(GRPC_PROTOS)];
for (const [file, source] of copies) {
  fs.mkdirSync(path.dirname(path.join(deps, file)), { recursive: true });
  fs.copyFileSync(source, path.join(deps, file));
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
