import crypto from 'node:crypto';
import YAML from 'yaml';
import { takesNoUserCredential, TOKEN_AUDIENCE, TOKEN_ISSUER } from '@iot-mesh/runtime';
import { corsPolicy, MAX_REQUEST_BYTES, UNARY_TIMEOUT_MS } from './edge-policy';
import { Cluster, RouteTable } from './route-table';

/** Where the container image puts the descriptor set (the file `npm run generate` writes to gen/iot.binpb). */
export const ENVOY_DESCRIPTOR_MOUNT = '/etc/envoy/iot.binpb';

const UNARY_TIMEOUT = `${UNARY_TIMEOUT_MS / 1000}s`;

/** The variables `envsubst` fills at container start, with what each means. */
export function envoyVariables(table: RouteTable): Array<{ name: string; meaning: string }> {
  return [
    { name: 'ENVOY_PORT', meaning: 'listener port for browsers and REST clients' },
    { name: 'ENVOY_ADMIN_PORT', meaning: 'admin interface port (bound to 127.0.0.1)' },
    ...table.clusters.flatMap((c) => [
      { name: `${c.envPrefix}_HOST`, meaning: `${c.name} service host` },
      { name: `${c.envPrefix}_PORT`, meaning: `${c.name} service gRPC port` },
    ]),
    { name: 'SIGNING_HTTP_PORT', meaning: 'signing service HTTP port serving /.well-known/jwks.json' },
    { name: 'DASHBOARD_HOST', meaning: 'host of the Node gateway that serves the dashboard files' },
    { name: 'DASHBOARD_PORT', meaning: 'its GATEWAY_PORT' },
    {
      name: CORS_ORIGIN_VARIABLE,
      meaning: `RE2 pattern a browser Origin must match in full to call cross-origin, e.g. https://console\\.example\\.com; the image's default ${CORS_SAME_ORIGIN_ONLY} matches no origin (same origin only), and empty fails at start`,
    },
  ];
}

/** The variable naming the origins Envoy lets call cross-origin (the Node gateway's GATEWAY_CORS_ORIGINS). */
export const CORS_ORIGIN_VARIABLE = 'ENVOY_CORS_ORIGIN_REGEX';

/** The image's default for {@link CORS_ORIGIN_VARIABLE}: no Origin is this (a browser's has a scheme), so none is allowed. */
export const CORS_SAME_ORIGIN_ONLY = 'same-origin-only';

/** The origin pattern, single-quoted so a regex's `|`, `*` or `[` stays a string after envsubst. */
function corsOriginPattern(): YAML.Scalar {
  const pattern = new YAML.Scalar(`\${${CORS_ORIGIN_VARIABLE}}`);
  pattern.type = 'QUOTE_SINGLE';
  return pattern;
}

function endpoint(cluster: string, host: string, port: string): object {
  return {
    cluster_name: cluster,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: host, port_value: port } } } }] }],
  };
}

function grpcCluster(cluster: Cluster): object {
  return {
    name: cluster.name,
    type: 'STRICT_DNS',
    connect_timeout: '2s',
    lb_policy: 'ROUND_ROBIN',
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
    health_checks: [{ timeout: '1s', interval: '5s', unhealthy_threshold: 2, healthy_threshold: 1, grpc_health_check: {} }],
    load_assignment: endpoint(cluster.name, `\${${cluster.envPrefix}_HOST}`, `\${${cluster.envPrefix}_PORT}`),
  };
}

function httpCluster(name: string, host: string, port: string): object {
  return { name, type: 'STRICT_DNS', connect_timeout: '2s', lb_policy: 'ROUND_ROBIN', load_assignment: endpoint(name, host, port) };
}

/**
 * The `jwt_authn` rules, first match wins: an RPC that takes no user token
 * (`(iot.common.v1.access) = ACCESS_PUBLIC` or `ACCESS_DEVICE_CREDENTIAL`), by
 * its gRPC path or any of its REST bindings, skips the check, so a stale token
 * cannot block a login and a device's own credential (a NATS user JWT, which
 * signing's JWKS cannot verify) reaches the handler that verifies it; on every
 * other path a bearer token must verify when present. Calls without one (API
 * keys) pass to the services, which decide. REST paths are matched as sent:
 * the transcoder runs after this filter.
 */
export function jwtRules(table: RouteTable): object[] {
  const skip = table.methods
    .filter((m) => takesNoUserCredential(m.access))
    .flatMap((m) => [
      { match: { path: m.grpcPath } },
      ...m.http.map((b) => ({ match: { safe_regex: { regex: b.template.pattern }, headers: [{ name: ':method', string_match: { exact: b.verb } }] } })),
    ]);
  return [...skip, { match: { prefix: '/' }, requires: { requires_any: { requirements: [{ provider_name: 'signing' }, { allow_missing: {} }] } } }];
}

/** SHA-256 of the descriptor set, written into the config so staleness is visible. */
export function descriptorDigest(descriptor: Uint8Array): string {
  return crypto.createHash('sha256').update(descriptor).digest('hex');
}

/**
 * Renders the Envoy bootstrap as a YAML template from the route table: one
 * exact-path route per RPC (REST requests are routed after the transcoder has
 * rewritten them to their gRPC path), one HTTP/2 cluster per service, and
 * `${VAR}` placeholders for every address, filled by envsubst at start.
 */
export function renderEnvoyConfig(table: RouteTable): string {
  const routes: object[] = table.methods.map((m) => ({
    name: m.grpcPath.slice(1),
    match: { path: m.grpcPath },
    route:
      m.kind === 'server_streaming'
        ? // Streams live as long as the browser watches: no route timeout, no idle cut, no max_stream_duration.
          { cluster: m.cluster.name, timeout: '0s', idle_timeout: '0s' }
        : // A gRPC-Web client's grpc-timeout applies when shorter than the route timeout.
          { cluster: m.cluster.name, timeout: UNARY_TIMEOUT, max_stream_duration: { grpc_timeout_header_max: UNARY_TIMEOUT } },
  }));
  routes.push({ name: 'dashboard', match: { prefix: '/' }, route: { cluster: 'dashboard', timeout: '30s' } });

  const httpFilters = [
    { name: 'envoy.filters.http.grpc_web', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb' } },
    { name: 'envoy.filters.http.cors', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors' } },
    {
      name: 'envoy.filters.http.jwt_authn',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
        providers: {
          signing: {
            remote_jwks: {
              http_uri: { uri: 'http://${SIGNING_HOST}:${SIGNING_HTTP_PORT}/.well-known/jwks.json', cluster: 'signing_jwks', timeout: '5s' },
              // Rotated keys are published before they sign, so a short cache picks them up in time.
              cache_duration: '300s',
              async_fetch: {},
            },
            // What signing puts into every access token; a token of another issuer or audience is refused at the edge.
            issuer: TOKEN_ISSUER,
            audiences: [TOKEN_AUDIENCE],
            from_headers: [{ name: 'authorization', value_prefix: 'Bearer ' }],
            // The services verify the token again and need it to know the caller.
            forward: true,
          },
        },
        rules: jwtRules(table),
      },
    },
    {
      name: 'envoy.filters.http.grpc_json_transcoder',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder',
        proto_descriptor: ENVOY_DESCRIPTOR_MOUNT,
        services: table.services.map((s) => s.typeName),
        convert_grpc_status: true,
        print_options: { add_whitespace: false, always_print_primitive_fields: false, always_print_enums_as_ints: false, preserve_proto_field_names: false },
        request_validation_options: { reject_unknown_method: false, reject_unknown_query_parameters: true },
        max_request_body_size: MAX_REQUEST_BYTES,
      },
    },
    { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
  ];

  const config = {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: '${ENVOY_ADMIN_PORT}' } } },
    static_resources: {
      listeners: [
        {
          name: 'edge',
          address: { socket_address: { address: '0.0.0.0', port_value: '${ENVOY_PORT}' } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'edge',
                    codec_type: 'AUTO',
                    // Envoy is the edge: x-forwarded-for gets the socket peer appended, and no client-sent entry is trusted.
                    use_remote_address: true,
                    xff_num_trusted_hops: 0,
                    access_log: [
                      { name: 'envoy.access_loggers.stdout', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog' } },
                    ],
                    route_config: {
                      name: 'edge',
                      virtual_hosts: [
                        {
                          name: 'edge',
                          domains: ['*'],
                          typed_per_filter_config: {
                            'envoy.filters.http.cors': {
                              '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy',
                              // Never any origin by default: a page of another site could call the API with a user's token.
                              allow_origin_string_match: [{ safe_regex: { regex: corsOriginPattern() } }],
                              allow_methods: corsPolicy.allowMethods.join(','),
                              allow_headers: corsPolicy.allowHeaders.join(','),
                              expose_headers: corsPolicy.exposeHeaders.join(','),
                              max_age: String(corsPolicy.maxAgeSeconds),
                            },
                          },
                          routes,
                        },
                      ],
                    },
                    http_filters: httpFilters,
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        ...table.clusters.map(grpcCluster),
        httpCluster('signing_jwks', '${SIGNING_HOST}', '${SIGNING_HTTP_PORT}'),
        httpCluster('dashboard', '${DASHBOARD_HOST}', '${DASHBOARD_PORT}'),
      ],
    },
  };

  const header = [
    'Generated by `npm run generate:envoy` from gen/iot.binpb. Do not edit; CI fails when this file is stale.',
    `descriptor-sha256: ${descriptorDigest(table.descriptor)}`,
    `The descriptor set is mounted at ${ENVOY_DESCRIPTOR_MOUNT}. Filled at container start by`,
    '  envsubst < envoy.tmpl.yaml > envoy.yaml && envoy -c envoy.yaml',
    'Variables:',
    ...envoyVariables(table).map((v) => `  ${v.name}: ${v.meaning}`),
  ];
  const yaml = YAML.stringify(config, { lineWidth: 0 });
  // envsubst output must carry ports as numbers: unquote the placeholders YAML had to quote.
  return `${header.map((l) => `# ${l}`).join('\n')}\n${yaml.replace(/"(\$\{[A-Z_]+\})"/g, '$1')}`;
}
