import { DescMethod, DescService, FileRegistry, getOption, hasOption } from '@bufbuild/protobuf';
import { Access, accessReader, DEFAULT_GRPC_PORTS, descriptorRegistry, descriptorSetPath, methodPath, readDescriptorSet } from '@iot-mesh/runtime';
import { compilePathTemplate, PathTemplate } from './path-template';

/** Where `npm run generate` writes the descriptor set every rendering is derived from. */
export const DESCRIPTOR_PATH = descriptorSetPath();

/** HTTP verbs a `google.api.http` rule can bind. */
export type HttpVerb = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** One `google.api.http` binding of a method (the rule itself or one of its additional bindings). */
export interface HttpBinding {
  verb: HttpVerb;
  template: PathTemplate;
  /** `""` (no body), `"*"` (the whole request) or a top-level request field name. */
  body: string;
  /** `""` (the whole response) or a top-level response field name. */
  responseBody: string;
}

/** An upstream service process; every RPC of one proto package goes to one cluster. */
export interface Cluster {
  /** `signing`, taken from the package `iot.signing.v1`. */
  name: string;
  /** Environment variable prefix of its address: `SIGNING_HOST`, `SIGNING_PORT`. */
  envPrefix: string;
  /** Default gRPC port of the service (`DEFAULT_GRPC_PORTS`); 0 when it has none and must be given by environment. */
  defaultPort: number;
}

/** One RPC the edge routes. */
export interface RouteMethod {
  service: DescService;
  method: DescMethod;
  /** gRPC path `/iot.signing.v1.AuthService/Login`. */
  grpcPath: string;
  kind: 'unary' | 'server_streaming';
  /** Who may call it, from its `(iot.common.v1.access)` option; `public` and `device_credential` routes skip the edge's JWT check. */
  access: Access;
  cluster: Cluster;
  /** REST bindings from `google.api.http`; empty for methods only reachable over gRPC-Web. */
  http: HttpBinding[];
}

/** Everything both renderings of the edge (Envoy config, Node gateway) are built from. */
export interface RouteTable {
  registry: FileRegistry;
  /** The descriptor set bytes the table was read from. */
  descriptor: Uint8Array;
  clusters: Cluster[];
  services: DescService[];
  methods: RouteMethod[];
}

/** Public services live in `iot.<cluster>.v<N>` packages. */
const PUBLIC_PACKAGE = /^iot\.([a-z][a-z0-9_]*)\.v\d+$/;

interface HttpRuleValue {
  pattern: { case: 'get' | 'post' | 'put' | 'patch' | 'delete' | 'custom' | undefined; value?: unknown };
  body: string;
  responseBody: string;
  additionalBindings: HttpRuleValue[];
}

function bindingsOf(rule: HttpRuleValue, where: string): HttpBinding[] {
  const { pattern } = rule;
  if (pattern.case === undefined) return [];
  if (pattern.case === 'custom') throw new Error(`${where}: custom HTTP verbs are not supported`);
  const binding: HttpBinding = {
    verb: pattern.case.toUpperCase() as HttpVerb,
    template: compilePathTemplate(String(pattern.value)),
    body: rule.body,
    responseBody: rule.responseBody,
  };
  return [binding, ...rule.additionalBindings.flatMap((b) => bindingsOf(b, where))];
}

/**
 * Reads a descriptor set and builds the route table: every service of an
 * `iot.<name>.v<N>` package, each method with its kind, cluster and HTTP
 * bindings and access rule. Client and bidirectional streams are refused:
 * browsers cannot make them over gRPC-Web; so is a method without an access
 * rule, which every service would refuse anyway.
 */
export function buildRouteTable(descriptor: Uint8Array = readDescriptorSet()): RouteTable {
  const registry = descriptorRegistry(descriptor);
  const access = accessReader(registry);
  const httpExtension = registry.getExtension('google.api.http');
  if (!httpExtension) throw new Error('descriptor set lacks google/api/annotations.proto');
  const clusters = new Map<string, Cluster>();
  const services: DescService[] = [];
  const methods: RouteMethod[] = [];
  for (const file of registry.files) {
    const match = PUBLIC_PACKAGE.exec(file.proto.package);
    if (!match || file.services.length === 0) continue;
    const name = match[1];
    let cluster = clusters.get(name);
    if (!cluster) {
      cluster = { name, envPrefix: name.toUpperCase(), defaultPort: (DEFAULT_GRPC_PORTS as Record<string, number>)[name] ?? 0 };
      clusters.set(name, cluster);
    }
    for (const service of file.services) {
      services.push(service);
      for (const method of service.methods) {
        const where = `${service.typeName}.${method.name}`;
        if (method.methodKind !== 'unary' && method.methodKind !== 'server_streaming') {
          throw new Error(`${where}: ${method.methodKind} methods cannot be served to browsers`);
        }
        const rule = access.accessOf(method);
        if (!rule) throw new Error(`${where}: no (iot.common.v1.access) option`);
        const http = hasOption(method, httpExtension) ? bindingsOf(getOption(method, httpExtension) as HttpRuleValue, where) : [];
        methods.push({ service, method, grpcPath: methodPath(method), kind: method.methodKind, access: rule, cluster, http });
      }
    }
  }
  const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  services.sort((a, b) => (a.typeName < b.typeName ? -1 : 1));
  methods.sort((a, b) => (a.grpcPath < b.grpcPath ? -1 : 1));
  return { registry, descriptor, clusters: [...clusters.values()].sort(byName), services, methods };
}
