/*
 * Envoy's CORS policy (issue 13): the committed template allows no origin by
 * default — `.*` let any site's page call the API with a user's token — and
 * takes the allowed ones from ENVOY_CORS_ORIGIN_REGEX at container start.
 */
import fs from 'node:fs';
import YAML from 'yaml';
import { repoPath } from '@iot-mesh/runtime';
import { CORS_ORIGIN_VARIABLE, CORS_SAME_ORIGIN_ONLY, envoyVariables } from '../src/envoy-config';
import { buildRouteTable } from '../src/route-table';
import { ENVOY_TEMPLATE_PATH } from '../envoy/generate';

const template = fs.readFileSync(ENVOY_TEMPLATE_PATH, 'utf8');

/** The template as envsubst fills it, every other variable with a stand-in. */
function render(corsOrigins: string): any {
  const values: Record<string, string> = Object.fromEntries(envoyVariables(buildRouteTable()).map((v) => [v.name, v.name.endsWith('PORT') ? '1234' : 'host.svc']));
  values[CORS_ORIGIN_VARIABLE] = corsOrigins;
  return YAML.parse(template.replace(/\$\{([A-Z_]+)\}/g, (_, name: string) => values[name]));
}

/** The origin patterns of the edge's CORS policy, as Envoy matches them (the whole Origin). */
function allowedOrigin(config: any): (origin: string) => boolean {
  const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const policy = hcm.route_config.virtual_hosts[0].typed_per_filter_config['envoy.filters.http.cors'];
  const patterns = policy.allow_origin_string_match.map((m: any) => new RegExp(`^(?:${m.safe_regex.regex})$`));
  return (origin) => patterns.some((p: RegExp) => p.test(origin));
}

test('the template has no any-origin pattern; the origins come from ENVOY_CORS_ORIGIN_REGEX', () => {
  expect(template).not.toMatch(/regex: ['"]?\.\*['"]?\s*$/m);
  expect(template).toContain(`regex: '\${${CORS_ORIGIN_VARIABLE}}'`);
  expect(envoyVariables(buildRouteTable()).map((v) => v.name)).toContain(CORS_ORIGIN_VARIABLE);
});

test("the image's default allows no cross-origin caller, not even the opaque origin null", () => {
  expect(fs.readFileSync(repoPath('gateway', 'envoy', 'Dockerfile'), 'utf8')).toContain(`${CORS_ORIGIN_VARIABLE}=${CORS_SAME_ORIGIN_ONLY}`);
  const allowed = allowedOrigin(render(CORS_SAME_ORIGIN_ONLY));
  for (const origin of ['https://evil.example', 'http://localhost:5173', 'null', '']) expect(allowed(origin)).toBe(false);
});

test('configured origins are allowed exactly, a look-alike is not', () => {
  const allowed = allowedOrigin(render('https://console\\.example\\.com|https://ops\\.example\\.com:8443'));
  expect(allowed('https://console.example.com')).toBe(true);
  expect(allowed('https://ops.example.com:8443')).toBe(true);
  for (const origin of ['https://console.example.com.evil.io', 'https://consoleXexample.com', 'http://console.example.com', 'https://evil.example']) expect(allowed(origin)).toBe(false);
});
