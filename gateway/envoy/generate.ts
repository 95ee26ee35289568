/**
 * Writes gateway/envoy/envoy.tmpl.yaml from gen/iot.binpb (`npm run generate:envoy`).
 * Run after `buf build`; `npm run generate` does both.
 */
import fs from 'node:fs';
import path from 'node:path';
import { repoPath } from '@iot-mesh/runtime';
import { renderEnvoyConfig } from '../src/envoy-config';
import { buildRouteTable } from '../src/route-table';

export const ENVOY_TEMPLATE_PATH = repoPath('gateway', 'envoy', 'envoy.tmpl.yaml');

if (require.main === module) {
  fs.writeFileSync(ENVOY_TEMPLATE_PATH, renderEnvoyConfig(buildRouteTable()));
  console.log(`wrote ${path.relative(process.cwd(), ENVOY_TEMPLATE_PATH)}`);
}
