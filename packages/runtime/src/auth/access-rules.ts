import { createFileRegistry, DescMethod, DescService, FileRegistry, fromBinary, getOption, hasOption } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { descriptorSetPath, readDescriptorSet } from '../repo-paths';

/**
 * Who may call an RPC, as declared on it in its proto with
 * `option (iot.common.v1.access) = ACCESS_…;` (proto/iot/common/v1/access.proto):
 *
 * - `public`: no credentials needed (login, token exchange, keys).
 * - `authenticated`: any caller with valid credentials.
 * - `viewer` / `operator` / `admin`: that role or a higher one in the caller's
 *   tenant (viewer < operator < admin). Handlers still scope every query to
 *   the caller's tenant (see `callerTenant`).
 * - `platform_admin`: an admin of the platform tenant.
 * - `device_credential`: a device with its own device credential (the NATS
 *   user JWT it connects with) as `authorization: Bearer`; no user token or
 *   API key counts. The middleware only requires the header and puts the
 *   token, unverified, into `ctx.deviceCredential`; the handler verifies it
 *   against the tenant's account key, which only the device service knows.
 */
export type Access = 'public' | 'authenticated' | 'viewer' | 'operator' | 'admin' | 'platform_admin' | 'device_credential';

/** Every {@link Access}: the user levels from the most open to the most closed, then the device's. */
export const ACCESS_LEVELS: readonly Access[] = ['public', 'authenticated', 'viewer', 'operator', 'admin', 'platform_admin', 'device_credential'];

/**
 * True when a caller of an RPC with `access` presents no user access token or
 * API key: nothing is verified as a user's (the edge's JWT check is skipped
 * too, so a stale token cannot block a login, and a device credential is not
 * mistaken for a bad access token).
 */
export function takesNoUserCredential(access: Access): boolean {
  return access === 'public' || access === 'device_credential';
}

/**
 * Fully-qualified service name → RPC name → access. A method missing here is
 * refused; tests pass their own rules to the middleware in this shape.
 */
export type AccessRules = Readonly<Record<string, Readonly<Record<string, Access>>>>;

/** Full name of the method option that carries an RPC's access rule. */
export const ACCESS_OPTION = 'iot.common.v1.access';

/** The mesh's own services live in `iot.*` packages; health and reflection carry no rule and bypass the middleware. */
function isMeshService(service: DescService): boolean {
  return service.file.proto.package.startsWith('iot.');
}

/**
 * Reads the access option of the methods of one registry. The option's
 * descriptor comes from the registry itself rather than from generated code,
 * so the descriptor set is the only input.
 */
export interface AccessReader {
  /** The access rule declared on `method`; undefined when it has none or ACCESS_UNSPECIFIED. */
  accessOf(method: DescMethod): Access | undefined;
}

/** Builds an {@link AccessReader} over a registry; throws when the registry lacks access.proto. */
export function accessReader(registry: FileRegistry): AccessReader {
  const option = registry.getExtension(ACCESS_OPTION);
  if (!option || option.fieldKind !== 'enum') throw new Error(`descriptor set lacks ${ACCESS_OPTION} (iot/common/v1/access.proto)`);
  return {
    accessOf(method) {
      if (!hasOption(method, option)) return undefined;
      const value = option.enum.value[getOption(method, option) as number];
      // ACCESS_PUBLIC → public; ACCESS_UNSPECIFIED and numbers this code does not know → no rule.
      const name = value?.name.replace(/^ACCESS_/, '').toLowerCase();
      return ACCESS_LEVELS.find((level) => level === name);
    },
  };
}

/** Every method of every `iot.*` service in a registry, in descriptor order. */
export function meshMethods(registry: FileRegistry): DescMethod[] {
  const methods: DescMethod[] = [];
  for (const file of registry.files) {
    for (const service of file.services) if (isMeshService(service)) methods.push(...service.methods);
  }
  return methods;
}

/** The gRPC path of a method: `/iot.device.v1.DeviceService/GetDevice`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** The access rules declared in a registry's `iot.*` services; methods without a rule are left out. */
export function accessRulesOf(registry: FileRegistry): AccessRules {
  const reader = accessReader(registry);
  const rules: Record<string, Record<string, Access>> = {};
  for (const method of meshMethods(registry)) {
    const access = reader.accessOf(method);
    if (access) (rules[method.parent.typeName] ??= {})[method.name] = access;
  }
  return rules;
}

/** gRPC paths of the `iot.*` methods that declare no access rule (or ACCESS_UNSPECIFIED), sorted. */
export function methodsWithoutAccess(registry: FileRegistry): string[] {
  const reader = accessReader(registry);
  return meshMethods(registry)
    .filter((m) => reader.accessOf(m) === undefined)
    .map(methodPath)
    .sort();
}

/** The registry of a descriptor set's bytes. */
export function descriptorRegistry(descriptor: Uint8Array): FileRegistry {
  return createFileRegistry(fromBinary(FileDescriptorSetSchema, descriptor));
}

const rulesByDescriptorPath = new Map<string, AccessRules>();

/**
 * The access rules of the descriptor set every server loads (gen/iot.binpb,
 * or `IOT_DESCRIPTOR_SET`), read once per process and path.
 */
export function descriptorAccessRules(): AccessRules {
  const file = descriptorSetPath();
  let rules = rulesByDescriptorPath.get(file);
  if (!rules) {
    rules = accessRulesOf(descriptorRegistry(readDescriptorSet()));
    rulesByDescriptorPath.set(file, rules);
  }
  return rules;
}

/** The rule of a full method path (`/iot.device.v1.DeviceService/GetDevice`); undefined when none. */
export function accessRuleOf(method: string, rules: AccessRules): Access | undefined {
  const [, service, rpc] = method.split('/');
  if (!service || !rpc) return undefined;
  const forService = rules[service];
  return forService && Object.prototype.hasOwnProperty.call(forService, rpc) ? forService[rpc] : undefined;
}
