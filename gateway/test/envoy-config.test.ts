import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { accessRuleOf, descriptorAccessRules, TOKEN_AUDIENCE, TOKEN_ISSUER } from '@iot-mesh/runtime';
import { ENVOY_TEMPLATE_PATH } from '../envoy/generate';
import { ENVOY_DESCRIPTOR_MOUNT, envoyVariables, renderEnvoyConfig } from '../src/envoy-config';
import { buildRouteTable, DESCRIPTOR_PATH } from '../src/route-table';

/* eslint-disable @typescript-eslint/no-explicit-any */
const committed = fs.readFileSync(ENVOY_TEMPLATE_PATH, 'utf8');
const table = buildRouteTable();

/** What envsubst does at container start. */
function substitute(template: string, values: Record<string, string>): string {
  return template.replace(/\$\{([A-Z_]+)\}/g, (_, name: string) => {
    if (!(name in values)) throw new Error(`unknown variable ${name}`);
    return values[name];
  });
}

const values = Object.fromEntries(envoyVariables(table).map((v, i) => [v.name, v.name.endsWith('PORT') ? String(20000 + i) : `${v.name.toLowerCase()}.svc`]));
const config: any = YAML.parse(substitute(committed, values));
const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
const routes: any[] = hcm.route_config.virtual_hosts[0].routes;
const clusters: any[] = config.static_resources.clusters;
const filter = (name: string) => hcm.http_filters.find((f: any) => f.name === name)?.typed_config;

/** Every public RPC, read from the descriptor set independently of the route table. */
function descriptorMethods(): Array<{ grpcPath: string; streaming: boolean }> {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, fs.readFileSync(DESCRIPTOR_PATH)));
  const out: Array<{ grpcPath: string; streaming: boolean }> = [];
  for (const file of registry.files) {
    if (!file.proto.package.startsWith('iot.')) continue;
    for (const service of file.services) {
      for (const method of service.methods) out.push({ grpcPath: `/${service.typeName}/${method.name}`, streaming: method.methodKind !== 'unary' });
    }
  }
  return out;
}

/** The first `jwt_authn` rule that matches a request, as Envoy picks it. */
function jwtRuleFor(verb: string, urlPath: string): any {
  const { rules } = filter('envoy.filters.http.jwt_authn');
  return rules.find((rule: any) => {
    const { match } = rule;
    const method = match.headers?.find((h: any) => h.name === ':method')?.string_match.exact;
    if (method !== undefined && method !== verb) return false;
    if (match.path !== undefined) return match.path === urlPath;
    if (match.prefix !== undefined) return urlPath.startsWith(match.prefix);
    return new RegExp(match.safe_regex.regex).test(urlPath);
  });
}

/** True when a `jwt_authn` rule verifies a bearer token with the signing provider. */
function verifies(rule: any): boolean {
  return rule?.requires?.requires_any?.requirements?.some((r: any) => r.provider_name === 'signing') === true;
}

/** A concrete URL path a `google.api.http` template matches (each variable filled with `x`). */
function samplePath(template: string): string {
  return template.replace(/\{[^}=]+=([^}]+)\}/g, (_, segments: string) => segments.replace(/\*\*/g, 'x/y').replace(/\*/g, 'x')).replace(/\{[^}]+\}/g, 'x');
}

describe('generated Envoy config', () => {
  it('is up to date with the descriptor set (run `npm run generate:envoy` when this fails)', () => {
    expect(committed).toBe(renderEnvoyConfig(table));
  });

  it('names the descriptor set that `npm run generate` produced', () => {
    const digest = crypto.createHash('sha256').update(fs.readFileSync(DESCRIPTOR_PATH)).digest('hex');
    expect(committed).toContain(`# descriptor-sha256: ${digest}\n`);
    const transcoder = filter('envoy.filters.http.grpc_json_transcoder');
    expect(transcoder.proto_descriptor).toBe(ENVOY_DESCRIPTOR_MOUNT);
    expect(path.basename(transcoder.proto_descriptor)).toBe(path.basename(DESCRIPTOR_PATH));
  });

  it('routes every RPC of the descriptor to an existing HTTP/2 cluster', () => {
    const methods = descriptorMethods();
    expect(methods.length).toBeGreaterThan(30);
    for (const method of methods) {
      const matching = routes.filter((r) => r.match.path === method.grpcPath);
      expect({ path: method.grpcPath, routes: matching.length }).toEqual({ path: method.grpcPath, routes: 1 });
      const cluster = clusters.find((c) => c.name === matching[0].route.cluster);
      expect(cluster).toBeDefined();
      expect(cluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config).toEqual({ http2_protocol_options: {} });
      const address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
      expect(address.address).toBe(`${cluster.name}_host.svc`);
      expect(typeof address.port_value).toBe('number');
    }
  });

  it('leaves server streams uncapped and gives unary calls a timeout', () => {
    for (const method of descriptorMethods()) {
      const route = routes.find((r) => r.match.path === method.grpcPath).route;
      if (method.streaming) {
        expect({ path: method.grpcPath, timeout: route.timeout, idle: route.idle_timeout, max: route.max_stream_duration }).toEqual({
          path: method.grpcPath,
          timeout: '0s',
          idle: '0s',
          max: undefined,
        });
      } else {
        expect(route.timeout).toMatch(/^[1-9]\d*s$/);
        // A client's shorter grpc-timeout wins over the route timeout.
        expect(route.max_stream_duration).toEqual({ grpc_timeout_header_max: route.timeout });
      }
    }
    expect(hcm.stream_idle_timeout).toBeUndefined();
  });

  it('serves the firmware image routes as raw bytes: their RPCs stream google.api.HttpBody, which the transcoder writes as the body', () => {
    const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, fs.readFileSync(DESCRIPTOR_PATH)));
    expect(registry.getFile('google/api/httpbody.proto')).toBeDefined();
    const image = ['GET /v1/firmware/{id}/image', 'GET /v1/tenants/{tenant_id}/firmware/{id}/image'];
    const bound = table.methods.flatMap((m) => m.http.filter((b) => image.includes(`${b.verb} ${b.template.source}`)).map((b) => ({ route: `${b.verb} ${b.template.source}`, rpc: m.grpcPath, kind: m.kind, output: m.method.output.typeName, access: m.access })));
    expect(bound).toEqual([
      { route: image[1], rpc: '/iot.device.v1.FirmwareService/GetDeviceFirmwareImage', kind: 'server_streaming', output: 'google.api.HttpBody', access: 'device_credential' },
      { route: image[0], rpc: '/iot.device.v1.FirmwareService/GetFirmwareImage', kind: 'server_streaming', output: 'google.api.HttpBody', access: 'viewer' },
    ]);
    for (const { rpc } of bound) expect(routes.find((r) => r.match.path === rpc).route).toMatchObject({ timeout: '0s', idle_timeout: '0s' });
    // Any other REST binding answering HttpBody would be raw bytes too: only these do.
    expect(table.methods.filter((m) => m.http.length > 0 && m.method.output.typeName === 'google.api.HttpBody').map((m) => m.grpcPath).sort()).toEqual(bound.map((b) => b.rpc).sort());
  });

  it('transcodes every public service with gRPC status converted to JSON', () => {
    const transcoder = filter('envoy.filters.http.grpc_json_transcoder');
    const services = [...new Set(descriptorMethods().map((m) => m.grpcPath.split('/')[1]))].sort();
    expect([...transcoder.services].sort()).toEqual(services);
    expect(transcoder.convert_grpc_status).toBe(true);
  });

  it('runs gRPC-Web, CORS, JWT and transcoding before the router', () => {
    expect(hcm.http_filters.map((f: any) => f.name)).toEqual([
      'envoy.filters.http.grpc_web',
      'envoy.filters.http.cors',
      'envoy.filters.http.jwt_authn',
      'envoy.filters.http.grpc_json_transcoder',
      'envoy.filters.http.router',
    ]);
    const cors = hcm.route_config.virtual_hosts[0].typed_per_filter_config['envoy.filters.http.cors'];
    expect(cors.expose_headers.split(',')).toEqual(expect.arrayContaining(['grpc-status', 'grpc-message']));
    expect(cors.allow_headers.split(',')).toEqual(expect.arrayContaining(['authorization', 'x-grpc-web', 'content-type']));
  });

  it('has a default in the container image for every variable it uses', () => {
    const dockerfile = fs.readFileSync(path.join(path.dirname(ENVOY_TEMPLATE_PATH), 'Dockerfile'), 'utf8');
    const defaults = new Set([...dockerfile.matchAll(/\b([A-Z_]+)=/g)].map((m) => m[1]));
    const used = new Set([...committed.matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1]));
    expect([...used].filter((name) => !defaults.has(name))).toEqual([]);
    expect(dockerfile).toContain(`COPY gen/iot.binpb ${ENVOY_DESCRIPTOR_MOUNT}`);
  });

  it('verifies bearer tokens against the signing service JWKS', () => {
    const jwt = filter('envoy.filters.http.jwt_authn');
    const remote = jwt.providers.signing.remote_jwks.http_uri;
    expect(remote.uri).toBe(`http://${values.SIGNING_HOST}:${values.SIGNING_HTTP_PORT}/.well-known/jwks.json`);
    const cluster = clusters.find((c) => c.name === remote.cluster);
    expect(cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value).toBe(Number(values.SIGNING_HTTP_PORT));
    expect(jwt.providers.signing.forward).toBe(true);
  });

  it('accepts only tokens with the issuer and audience signing puts into them', () => {
    const provider = filter('envoy.filters.http.jwt_authn').providers.signing;
    expect(provider.issuer).toBe(TOKEN_ISSUER);
    expect(provider.audiences).toEqual([TOKEN_AUDIENCE]);
  });

  it('appends the socket peer to x-forwarded-for and trusts no client-sent entry', () => {
    expect(hcm.use_remote_address).toBe(true);
    expect(hcm.xff_num_trusted_hops).toBe(0);
  });

  it('skips the JWT check exactly on the public and device-credential RPCs, by gRPC path and by REST binding, as the services\' access rules say', () => {
    const rules = descriptorAccessRules();
    const checked: string[] = [];
    for (const method of descriptorMethods()) {
      const access = accessRuleOf(method.grpcPath, rules);
      const skips = access === 'public' || access === 'device_credential';
      expect({ path: method.grpcPath, verifies: verifies(jwtRuleFor('POST', method.grpcPath)) }).toEqual({ path: method.grpcPath, verifies: !skips });
      for (const binding of table.methods.find((m) => m.grpcPath === method.grpcPath)!.http) {
        const url = samplePath(binding.template.source);
        expect({ route: `${binding.verb} ${url}`, verifies: verifies(jwtRuleFor(binding.verb, url)) }).toEqual({ route: `${binding.verb} ${url}`, verifies: !skips });
        if (skips) checked.push(`${binding.verb} ${url}`);
      }
    }
    // The login form and the key set are reachable without a token even when a stale one is sent,
    // and a device's own credential (a NATS user JWT, not signing's) reaches the firmware download.
    expect(checked).toEqual(expect.arrayContaining(['POST /v1/auth:login', 'GET /.well-known/jwks.json', `GET ${samplePath('/v1/tenants/{tenant_id}/firmware/{id}/image')}`]));
    // A public REST path under another verb is not public: it reaches the catch-all.
    expect(verifies(jwtRuleFor('GET', '/v1/auth:login'))).toBe(true);
    // Anything else, the dashboard's files included, verifies a bearer token when one is present and lets calls without one through.
    expect(jwtRuleFor('GET', '/index.html').requires).toEqual({ requires_any: { requirements: [{ provider_name: 'signing' }, { allow_missing: {} }] } });
  });
});
