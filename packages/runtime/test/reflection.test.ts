import { spawn, spawnSync } from 'node:child_process';
import { status as grpcStatus } from '@grpc/grpc-js';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { ServerReflectionResponse } from '../../../gen/ts/grpc/reflection/v1/reflection';
import type { DescService } from '@bufbuild/protobuf';
import { descriptorRegistry, readDescriptorSet, repoPath } from '../src';
import { answerReflectionRequest, DescriptorIndex, splitDescriptorSet } from '../src/reflection';
import { startMeshForTest, TestMesh } from '../../../testing/mesh';
import { TestTenant } from '../../../testing/signing';

/**
 * Debian's C-core grpcio (what grpcurl-like tools are built on) talking to the
 * three services knowing nothing but what server reflection tells it:
 * testing/reflection-client.py resolves every service, method and message
 * type through reflection and calls unary and streaming methods of each.
 */
const PYTHON = '/usr/bin/python3';
const INSTALL = 'apt-get update && apt-get install -y python3-grpcio python3-protobuf';

jest.setTimeout(120_000);

/** Fails with the exact install command when Debian's grpcio or protobuf is missing (CI installs them through .ci/run). */
function requireDebianGrpc(): void {
  const probe = spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { encoding: 'utf8' });
  if (probe.status !== 0) throw new Error(`Debian's python3-grpcio and python3-protobuf are needed (${PYTHON}: ${(probe.stderr || probe.error?.message || '').trim()}); run: ${INSTALL}`);
}

/** Runs the client with a plan on stdin; resolves to its JSON report. */
function runClient(plan: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [repoPath('testing', 'reflection-client.py')], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`reflection-client.py exited ${code}: ${stderr}`));
      try {
        resolve(JSON.parse(stdout));
      } catch (err) {
        reject(new Error(`reflection-client.py printed no JSON (${(err as Error).message}): ${stdout}\n${stderr}`));
      }
    });
    child.stdin.end(JSON.stringify(plan));
  });
}

/** Each server's business services: every service of its package in the descriptor set (`iot.<server>.v1`). */
const SERVICE_DESCRIPTORS = [...descriptorRegistry(readDescriptorSet())].filter((d): d is DescService => d.kind === 'service');
const BUSINESS_SERVICES = Object.fromEntries(
  (['signing', 'device', 'monitoring'] as const).map((server) => [server, SERVICE_DESCRIPTORS.filter((s) => s.typeName.startsWith(`iot.${server}.v1.`)).map((s) => s.typeName).sort()]),
) as Record<'signing' | 'device' | 'monitoring', string[]>;

/**
 * One generic call for each business service the explicit steps below do not
 * call: its first unary method (else its first server stream), with an empty
 * request as the tenant admin.
 * A service added to a proto is called the day it is added.
 */
function genericSteps(covered: Set<string>, metadata: Record<string, string>) {
  return Object.entries(BUSINESS_SERVICES).flatMap(([server, services]) =>
    services
      .filter((name) => !covered.has(name))
      .map((name) => {
        const service = SERVICE_DESCRIPTORS.find((s) => s.typeName === name)!;
        const method = service.methods.find((m) => m.methodKind === 'unary') ?? service.methods.find((m) => m.methodKind === 'server_streaming');
        if (!method) return undefined;
        const step = { id: `generic.${name}`, server, method: `${name}/${method.name}`, request: {}, metadata };
        // A stream is read briefly: what counts is that it was resolved and answered.
        return method.methodKind === 'unary' ? step : { ...step, stream: { messages: 1, timeout_s: 2 } };
      })
      .filter(<T,>(step: T | undefined): step is T => step !== undefined),
  );
}
/** A telemetry payload in its canonical proto3 JSON encoding (as a device would send it). */
const jsonPayload = (telemetry: unknown) => Buffer.from(JSON.stringify(telemetry));

const COMMON_SERVICES = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

/** The explicit steps plus one generic call for each service they leave out. */
type PlannedStep = { id: string; method: string; during?: { method: string }[] };
let plannedSteps: PlannedStep[] = [];
function withGenericSteps(steps: PlannedStep[], metadata: Record<string, string>): PlannedStep[] {
  const covered = new Set(steps.flatMap((s) => [s, ...(s.during ?? [])]).map((s) => s.method.split('/')[0]));
  plannedSteps = [...steps, ...genericSteps(covered, metadata)];
  return plannedSteps;
}

describe('a client that knows nothing but server reflection (Debian python3-grpcio)', () => {
  let mesh: TestMesh;
  let tenant: TestTenant;
  let report: any;
  const start = Date.now() - 10 * 60_000;

  beforeAll(async () => {
    requireDebianGrpc();
    mesh = await startMeshForTest();
    tenant = await mesh.signing.createTenant();
    await mesh.monitoring.registerDevice(tenant.tenantId, 'pump-1');
    const points = Array.from({ length: 5 }, (_, i) => ({ metric: 'temperature', time: new Date(start + i * 60_000).toISOString(), numberValue: 20 + i }));
    await mesh.monitoring.publish(tenant.tenantId, 'pump-1', jsonPayload({ messageId: 'seed', points }));
    for (let i = 0; i < 100 && (await mesh.monitoring.rowCount(tenant.tenantId)) < 5; i++) await new Promise((r) => setTimeout(r, 100));

    // Live frames and alerts need telemetry arriving while the client's streams are open.
    let sequence = 0;
    const publisher = setInterval(() => {
      sequence += 1;
      void mesh.monitoring.publish(tenant.tenantId, 'pump-1', jsonPayload({ messageId: `live-${sequence}`, points: [{ metric: 'temperature', time: new Date().toISOString(), numberValue: 90 }] })).catch(() => undefined);
    }, 250);
    const bearer = { authorization: 'Bearer ${token}' };
    try {
      report = await runClient({
        servers: mesh.addresses,
        probes: {
          signing: { files: ['iot/signing/v1/auth.proto', 'google/protobuf/timestamp.proto'], symbols: ['iot.common.v1.Role', 'iot.signing.v1.AuthService.Login'], missing_file: 'iot/signing/v1/nothing.proto' },
        },
        steps: withGenericSteps([
          { id: 'signing.health', server: 'signing', method: 'grpc.health.v1.Health/Check', request: {} },
          { id: 'signing.jwks', server: 'signing', method: 'iot.signing.v1.AuthService/GetJwks', request: {} },
          { id: 'signing.login_wrong_password', server: 'signing', method: 'iot.signing.v1.AuthService/Login', request: { tenant: tenant.tenantName, email: tenant.admin.email, password: 'wrong' } },
          { id: 'signing.login', server: 'signing', method: 'iot.signing.v1.AuthService/Login', request: { tenant: tenant.tenantName, email: tenant.admin.email, password: tenant.admin.password }, save: { token: 'tokens.accessToken', refreshToken: 'tokens.refreshToken' } },
          { id: 'signing.whoami', server: 'signing', method: 'iot.signing.v1.AuthService/WhoAmI', request: {}, metadata: bearer },
          { id: 'signing.tenant', server: 'signing', method: 'iot.signing.v1.TenantService/GetTenant', request: { id: tenant.tenantId }, metadata: bearer },
          { id: 'signing.users', server: 'signing', method: 'iot.signing.v1.UserService/ListUsers', request: {}, metadata: bearer },
          { id: 'signing.create_api_key', server: 'signing', method: 'iot.signing.v1.ApiKeyService/CreateApiKey', request: { name: 'reflection', role: 'ROLE_VIEWER' }, metadata: bearer },
          { id: 'signing.api_keys', server: 'signing', method: 'iot.signing.v1.ApiKeyService/ListApiKeys', request: {}, metadata: bearer },
          { id: 'signing.refresh', server: 'signing', method: 'iot.signing.v1.AuthService/Refresh', request: { refreshToken: '${refreshToken}' }, save: { newRefreshToken: 'tokens.refreshToken' } },
          { id: 'signing.refresh_spent', server: 'signing', method: 'iot.signing.v1.AuthService/Refresh', request: { refreshToken: '${refreshToken}' } },
          { id: 'signing.audit', server: 'signing', method: 'iot.signing.v1.AuditService/ListAuditEvents', request: {}, metadata: bearer },

          { id: 'device.health', server: 'device', method: 'grpc.health.v1.Health/Check', request: {} },
          { id: 'device.unauthenticated', server: 'device', method: 'iot.device.v1.DeviceService/ListDevices', request: {} },
          { id: 'device.create', server: 'device', method: 'iot.device.v1.DeviceService/CreateDevice', request: { device: { name: 'pump-a', type: 'pump', labels: { site: 'north' } } }, metadata: bearer, save: { deviceId: 'device.id' } },
          { id: 'device.list', server: 'device', method: 'iot.device.v1.DeviceService/ListDevices', request: { type: 'pump' }, metadata: bearer },
          { id: 'device.not_found', server: 'device', method: 'iot.device.v1.DeviceService/GetDevice', request: { id: 'no-such-device' }, metadata: bearer },
          {
            id: 'device.watch',
            server: 'device',
            method: 'iot.device.v1.DeviceService/WatchDevices',
            // changes_only: the relabel below is the event under test, not the initial snapshot.
            request: { deviceIds: ['${deviceId}'], changesOnly: true },
            metadata: bearer,
            stream: { messages: 1, timeout_s: 15 },
            // Repeated until the stream has its event: the server subscribes after the stream opens.
            during: [{ id: 'relabel', server: 'device', method: 'iot.device.v1.DeviceService/UpdateDevice', request: { device: { id: '${deviceId}', labels: { site: 'south' } }, updateMask: 'labels' }, metadata: bearer }],
            repeat_s: 0.5,
          },
          { id: 'device.desired', server: 'device', method: 'iot.device.v1.TwinService/UpdateDesired', request: { deviceId: '${deviceId}', desired: { fan: 'on' } }, metadata: bearer },
          { id: 'device.twin', server: 'device', method: 'iot.device.v1.TwinService/GetTwin', request: { deviceId: '${deviceId}' }, metadata: bearer },
          { id: 'device.credential', server: 'device', method: 'iot.device.v1.CredentialService/IssueCredential', request: { deviceId: '${deviceId}' }, metadata: bearer },
          { id: 'device.commands', server: 'device', method: 'iot.device.v1.CommandService/ListCommands', request: { deviceId: '${deviceId}' }, metadata: bearer },

          { id: 'monitoring.health', server: 'monitoring', method: 'grpc.health.v1.Health/Check', request: {} },
          { id: 'monitoring.latest', server: 'monitoring', method: 'iot.monitoring.v1.TelemetryService/GetLatest', request: { deviceIds: ['pump-1'], metrics: ['temperature'] }, metadata: bearer },
          {
            id: 'monitoring.history',
            server: 'monitoring',
            method: 'iot.monitoring.v1.TelemetryService/QueryHistory',
            request: { deviceId: 'pump-1', metrics: ['temperature'], timeRange: { start: new Date(start).toISOString(), end: new Date(start + 5 * 60_000).toISOString() }, bucketWidth: '60s', aggregations: ['AGGREGATION_MAX'] },
            metadata: bearer,
          },
          { id: 'monitoring.points', server: 'monitoring', method: 'iot.monitoring.v1.TelemetryService/ListPoints', request: { deviceId: 'pump-1', timeRange: { start: new Date(start).toISOString(), end: new Date(start + 5 * 60_000).toISOString() } }, metadata: bearer },
          { id: 'monitoring.live', server: 'monitoring', method: 'iot.monitoring.v1.TelemetryService/StreamLive', request: { deviceIds: ['pump-1'] }, metadata: bearer, stream: { messages: 3, timeout_s: 15 } },
          {
            id: 'monitoring.alerts_stream',
            server: 'monitoring',
            method: 'iot.monitoring.v1.AlertService/StreamAlerts',
            request: {},
            metadata: bearer,
            stream: { messages: 1, timeout_s: 20 },
            during: [
              {
                id: 'create_rule',
                server: 'monitoring',
                method: 'iot.monitoring.v1.AlertService/CreateAlertRule',
                request: { rule: { name: 'hot', metric: 'temperature', deviceIds: ['pump-1'], threshold: { comparison: 'COMPARISON_GREATER_THAN', threshold: 50 }, severity: 'SEVERITY_WARNING', enabled: true } },
                metadata: bearer,
                save: { ruleId: 'rule.id' },
              },
            ],
          },
          { id: 'monitoring.rules', server: 'monitoring', method: 'iot.monitoring.v1.AlertService/ListAlertRules', request: {}, metadata: bearer },
          { id: 'monitoring.alerts', server: 'monitoring', method: 'iot.monitoring.v1.AlertService/ListAlerts', request: { deviceId: 'pump-1' }, metadata: bearer },
        ], bearer),
      });
    } finally {
      clearInterval(publisher);
    }
  }, 120_000);

  afterAll(async () => {
    await mesh?.stop();
  });

  const step = (id: string) => report.steps[id];

  it('calls every business service of the descriptor set at least once, each answering with a response or a status of its own', () => {
    const called = new Set(plannedSteps.flatMap((s) => [s, ...(s.during ?? [])]).map((s) => s.method.split('/')[0]));
    for (const services of Object.values(BUSINESS_SERVICES)) for (const name of services) expect({ name, called: called.has(name) }).toEqual({ name, called: true });
    for (const planned of plannedSteps.filter((s) => s.id.startsWith('generic.'))) {
      const result = step(planned.id);
      // Resolved through reflection and dispatched by the server: no client-side failure, no internal error.
      expect({ id: planned.id, outcome: result.client_error ? 'client_error' : (result.code ?? 'OK') }).toEqual({ id: planned.id, outcome: expect.not.stringMatching(/^(client_error|INTERNAL|UNKNOWN|UNIMPLEMENTED)$/) });
    }
  });

  it('lists every service, health and both reflection versions, over v1alpha and v1 alike', () => {
    for (const [server, services] of Object.entries(BUSINESS_SERVICES)) {
      const reflection = report.reflection[server];
      expect(reflection.services).toEqual([...COMMON_SERVICES, ...services].sort());
      expect(reflection.v1_services).toEqual(reflection.services);
    }
  });

  it('resolves every method of every listed service to message types, imports included', () => {
    for (const server of Object.keys(BUSINESS_SERVICES)) {
      const reflection = report.reflection[server];
      expect(reflection.errors).toEqual({});
      expect(Object.keys(reflection.methods).sort()).toEqual(reflection.services);
    }
    expect(report.reflection.signing.methods['iot.signing.v1.AuthService'].Login).toEqual(['iot.signing.v1.LoginRequest', 'iot.signing.v1.LoginResponse']);
    expect(report.reflection.device.methods['iot.device.v1.DeviceService'].WatchDevices).toEqual(['iot.device.v1.WatchDevicesRequest', 'iot.device.v1.WatchDevicesResponse']);
    expect(Object.keys(report.reflection.monitoring.methods['grpc.health.v1.Health'])).toEqual(expect.arrayContaining(['Check', 'Watch']));
  });

  it('serves each proto file by name with its imports, symbols from the file that declares them, and NOT_FOUND for an unknown file', () => {
    const { files, missing_file: missing } = report.reflection.signing;
    expect(files['iot/signing/v1/auth.proto'][0]).toBe('iot/signing/v1/auth.proto');
    expect(files['iot/signing/v1/auth.proto']).toEqual(expect.arrayContaining(['google/protobuf/timestamp.proto', 'iot/common/v1/common.proto', 'iot/common/v1/access.proto', 'google/api/annotations.proto']));
    expect(files['google/protobuf/timestamp.proto']).toEqual(['google/protobuf/timestamp.proto']);
    expect(files['iot.common.v1.Role']).toBe('iot/common/v1/common.proto');
    expect(files['iot.signing.v1.AuthService.Login']).toBe('iot/signing/v1/auth.proto');
    expect(missing).toMatch(/NOT_FOUND: file iot\/signing\/v1\/nothing.proto not found/);
  });

  it('calls grpc.health.v1 on every server', () => {
    for (const server of ['signing', 'device', 'monitoring']) expect(step(`${server}.health`).response).toEqual({ status: 'SERVING' });
  });

  it('calls every signing service: public, failing and authenticated methods', () => {
    expect(step('signing.jwks').response.keys.length).toBeGreaterThan(0);
    expect(step('signing.login_wrong_password')).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(step('signing.login').response.user.email).toBe(tenant.admin.email);
    expect(step('signing.whoami').response.principal).toMatchObject({ tenantId: tenant.tenantId });
    expect(step('signing.tenant').response.tenant).toMatchObject({ id: tenant.tenantId, name: tenant.tenantName });
    expect(step('signing.users').response.users.map((u: { email: string }) => u.email).sort()).toEqual([tenant.admin.email, tenant.operator.email, tenant.viewer.email].sort());
    expect(step('signing.create_api_key').response.secret).toEqual(expect.any(String));
    expect(step('signing.api_keys').response.apiKeys.map((k: { name: string }) => k.name)).toEqual(['reflection']);
    expect(step('signing.refresh').response.tokens.accessToken).toMatch(/^ey/);
    expect(step('signing.refresh_spent')).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(step('signing.audit').response.events.length).toBeGreaterThan(0);
  });

  it('calls every device service, including a server stream that receives the change it caused', () => {
    expect(step('device.unauthenticated')).toMatchObject({ code: 'UNAUTHENTICATED' });
    const id = step('device.create').response.device.id as string;
    expect(step('device.create').response.device).toMatchObject({ name: 'pump-a', type: 'pump', tenantId: tenant.tenantId });
    expect(step('device.list').response.devices.map((d: { id: string }) => d.id)).toEqual([id]);
    expect(step('device.not_found')).toMatchObject({ code: 'NOT_FOUND' });
    const watch = step('device.watch');
    expect(watch).toMatchObject({ kind: 'server_stream', cancelled_after_timeout: false });
    expect(watch.messages[0].device).toMatchObject({ id, labels: { site: 'south' } });
    expect(watch.during[0].response.device.labels).toEqual({ site: 'south' });
    expect(step('device.desired').response).toBeDefined();
    expect(step('device.twin').response.twin).toMatchObject({ deviceId: id, desired: { fan: 'on' } });
    expect(step('device.credential').response.credential).toMatchObject({ deviceId: id, tenantId: tenant.tenantId, token: expect.stringMatching(/^ey/) });
    expect(step('device.commands')).not.toHaveProperty('code');
  });

  it('calls every monitoring service, including live and alert streams', () => {
    expect(step('monitoring.latest').response.points).toEqual([expect.objectContaining({ deviceId: 'pump-1', metric: 'temperature' })]);
    expect(step('monitoring.history').response.series[0].buckets.length).toBeGreaterThan(0);
    expect(step('monitoring.points').response.points).toHaveLength(5);
    const live = step('monitoring.live');
    expect(live).toMatchObject({ kind: 'server_stream', cancelled_after_timeout: false });
    // The first frame may be empty (the server opens the stream at once); the next carry the points published meanwhile.
    expect(live.messages.flatMap((m: { points?: unknown[] }) => m.points ?? [])[0]).toMatchObject({ deviceId: 'pump-1', metric: 'temperature', value: { numberValue: 90 } });
    const alerts = step('monitoring.alerts_stream');
    const ruleId = alerts.during[0].response.rule.id as string;
    expect(alerts).toMatchObject({ kind: 'server_stream', cancelled_after_timeout: false });
    expect(alerts.messages[0].alert).toMatchObject({ ruleId, deviceId: 'pump-1', value: 90 });
    expect(step('monitoring.rules').response.rules.map((r: { id: string }) => r.id)).toEqual([ruleId]);
    expect(step('monitoring.alerts').response.alerts[0]).toMatchObject({ ruleId, deviceId: 'pump-1' });
  });
});

describe('the reflection answers, from the descriptor set as built', () => {
  const index = new DescriptorIndex(readDescriptorSet());
  const services = ['grpc.health.v1.Health', 'iot.device.v1.DeviceService'];
  const names = (response: ServerReflectionResponse) => response.fileDescriptorResponse!.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);

  it('serves each file with the exact bytes buf wrote', () => {
    const built = splitDescriptorSet(readDescriptorSet());
    const answer = answerReflectionRequest(index, services, { host: '', fileByFilename: 'iot/device/v1/device.proto' }, new Set());
    const served = answer.fileDescriptorResponse!.fileDescriptorProto[0];
    expect(built.some((bytes) => Buffer.compare(Buffer.from(bytes), served) === 0)).toBe(true);
  });

  it('sends a file again when asked but its imports only once per stream', () => {
    const sent = new Set<string>();
    const first = names(answerReflectionRequest(index, services, { host: '', fileByFilename: 'iot/device/v1/twin.proto' }, sent));
    expect(first).toEqual(expect.arrayContaining(['iot/device/v1/twin.proto', 'google/protobuf/struct.proto', 'iot/common/v1/access.proto', 'google/protobuf/descriptor.proto']));
    const second = names(answerReflectionRequest(index, services, { host: '', fileContainingSymbol: 'iot.device.v1.DeviceService.GetDevice' }, sent));
    expect(second[0]).toBe('iot/device/v1/device.proto');
    expect(second).not.toContain('iot/common/v1/access.proto');
    expect(names(answerReflectionRequest(index, services, { host: '', fileByFilename: 'iot/device/v1/twin.proto' }, sent))).toEqual(['iot/device/v1/twin.proto']);
  });

  it('finds extensions by the message they extend (the access option and google.api.http)', () => {
    const byNumber = answerReflectionRequest(index, services, { host: '', fileContainingExtension: { containingType: 'google.protobuf.MethodOptions', extensionNumber: 50001 } }, new Set());
    expect(names(byNumber)[0]).toBe('iot/common/v1/access.proto');
    const numbers = answerReflectionRequest(index, services, { host: '', allExtensionNumbersOfType: 'google.protobuf.MethodOptions' }, new Set());
    expect(numbers.allExtensionNumbersResponse).toEqual({ baseTypeName: 'google.protobuf.MethodOptions', extensionNumber: expect.arrayContaining([50001, 72295728]) });
    expect(names(answerReflectionRequest(index, services, { host: '', fileContainingSymbol: 'iot.common.v1.access' }, new Set()))[0]).toBe('iot/common/v1/access.proto');
  });

  it('resolves nested types and enum values, and answers NOT_FOUND for what the set does not declare', () => {
    expect(names(answerReflectionRequest(index, services, { host: '', fileContainingSymbol: 'grpc.health.v1.HealthCheckResponse.ServingStatus' }, new Set()))[0]).toBe('grpc/health/v1/health.proto');
    expect(names(answerReflectionRequest(index, services, { host: '', fileContainingSymbol: 'iot.common.v1.ROLE_ADMIN' }, new Set()))[0]).toBe('iot/common/v1/common.proto');
    for (const request of [
      { host: '', fileContainingSymbol: 'iot.device.v1.NoSuchThing' },
      { host: '', fileByFilename: 'iot/device/v1/none.proto' },
      { host: '', fileContainingExtension: { containingType: 'google.protobuf.MethodOptions', extensionNumber: 1 } },
      { host: '', allExtensionNumbersOfType: 'iot.device.v1.NoSuchThing' },
    ]) {
      expect(answerReflectionRequest(index, services, request, new Set()).errorResponse).toMatchObject({ errorCode: grpcStatus.NOT_FOUND });
    }
    expect(answerReflectionRequest(index, services, { host: '' }, new Set()).errorResponse).toMatchObject({ errorCode: grpcStatus.INVALID_ARGUMENT });
  });
});
