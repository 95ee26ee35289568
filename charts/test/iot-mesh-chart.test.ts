/**
 * Checks of charts/iot-mesh that run without Helm (no Helm binary can be
 * installed here): values.yaml against values.schema.json, every component's
 * template inputs against the processes they configure, the templates'
 * references, and the NATS config against nats-server itself. What this does
 * not verify: that Helm renders the templates (Go template + sprig syntax and
 * indentation) and that Kubernetes accepts the objects.
 */
import Ajv from 'ajv';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { baseEnv, EnvShape, repoPath } from '@iot-mesh/runtime';
import { metricsEnv } from '@iot-mesh/runtime';
import { deviceService } from '@iot-mesh/device';
import { monitoringService } from '@iot-mesh/monitoring';
import { signingService } from '@iot-mesh/signing';
import { buildRouteTable } from '../../gateway/src/route-table';
import { generateOperatorSetup } from '@iot-mesh/nats-auth';
import { writeKubernetesSecretFiles } from '../../scripts/nats-setup';

const CHART = repoPath('charts', 'iot-mesh');
const read = (file: string) => fs.readFileSync(path.join(CHART, file), 'utf8');
const schema = JSON.parse(read('values.schema.json'));
const values = YAML.parse(read('values.yaml'));
const chart = YAML.parse(read('Chart.yaml'));
const templates = Object.fromEntries(fs.readdirSync(path.join(CHART, 'templates')).map((f) => [f, read(path.join('templates', f))]));

/** The release name the rendered examples use; fullname is "<release>-iot-mesh". */
const FULLNAME = 'rel-iot-mesh';
const SECRET_NAME = `${FULLNAME}-secrets`;
const NATS_AUTH_SECRET = `${FULLNAME}-nats-auth`;
/** Keys of the NATS auth Secret: the files `npm run setup:nats` writes into its kubernetes/ folder. */
const NATS_AUTH_KEYS = ['auth.conf', 'service.creds', 'system.creds', 'operator-signing-seed', 'platform-account', 'tenant-key-secret'];

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}
interface Port {
  name: string;
  value: number;
}
interface Component {
  enabled: boolean;
  kind?: string;
  useDefault?: { env?: boolean };
  imageOverride?: { repository?: string; tag?: string };
  command?: string[];
  args?: string[];
  ports?: Port[];
  env?: EnvVar[];
  readinessProbe?: Record<string, any>;
  livenessProbe?: Record<string, any>;
  configuration?: { mountPath: string; files: Record<string, string> };
  secretMounts?: Array<{ name: string; secretName: string; mountPath: string }>;
  replicas?: number;
}
const components = values.components as Record<string, Component>;
const enabled = Object.entries(components).filter(([, c]) => c.enabled);

function validator() {
  const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false, strictRequired: false });
  return ajv.compile(schema);
}

/** The template expressions env values may use, and what they render to for the example release. */
const ALLOWED_EXPRESSIONS: Record<string, string> = {
  '{{ include "iot-mesh.fullname" . }}': FULLNAME,
  '{{ include "iot-mesh.secretName" . }}': SECRET_NAME,
  '{{ include "iot-mesh.natsAuthSecretName" . }}': NATS_AUTH_SECRET,
  // _helpers.tpl: 3 when components.nats.replicas > 1 (checked below), else 1.
  '{{ include "iot-mesh.streamReplicas" . }}': components_natsReplicas() > 1 ? '3' : '1',
  '{{ .Values.gatewayCorsOrigins }}': String(values.gatewayCorsOrigins),
};

function components_natsReplicas(): number {
  return Number(values.components.nats.replicas);
}

function renderValue(text: string): string {
  return text.replace(/\{\{.*?\}\}/g, (expr) => {
    if (!(expr in ALLOWED_EXPRESSIONS)) throw new Error(`unsupported template expression in an env value: ${expr}`);
    return ALLOWED_EXPRESSIONS[expr];
  });
}

/** The container env the template builds (iot-mesh.env in _helpers.tpl), rendered for the example release. */
function effectiveEnv(name: string, c: Component): EnvVar[] {
  const own = c.env ?? [];
  const defaults: EnvVar[] = c.useDefault?.env ? (values.default.env as EnvVar[]).filter((d) => !own.some((o) => o.name === d.name)) : [];
  const list = [...defaults, ...own, ...(c.useDefault?.env ? [{ name: 'OTEL_SERVICE_NAME', value: name }] : [])];
  return list.map((v) => ({
    ...v,
    value: v.value === undefined ? undefined : renderValue(v.value),
    valueFrom: v.valueFrom?.secretKeyRef ? { secretKeyRef: { ...v.valueFrom.secretKeyRef, name: renderValue(v.valueFrom.secretKeyRef.name) } } : v.valueFrom,
  }));
}

/** Keys the chart's Secret has (templates/secret.yaml's `$given` dict). */
function secretKeys(): string[] {
  const line = templates['secret.yaml'].split('\n').find((l) => l.includes('$given := dict'));
  return [...(line ?? '').matchAll(/"([a-z-]+)" \.Values/g)].map((m) => m[1]);
}

/** Every variable a runtime service reads: shared runtime, its dependencies, its own. */
function serviceShape(spec: { env: EnvShape; uses: { postgres?: unknown; redis?: boolean; nats?: boolean } }): EnvShape {
  return {
    ...baseEnv,
    ...metricsEnv,
    GRPC_PORT: z.string(),
    ...(spec.uses.postgres ? { DATABASE_URL: z.string().optional() } : {}),
    ...(spec.uses.redis ? { REDIS_URL: z.string().optional() } : {}),
    ...(spec.uses.nats ? { NATS_URL: z.string().optional(), NATS_CREDS: z.string().optional() } : {}),
    ...spec.env,
  };
}

const SERVICES = { signing: signingService, device: deviceService, monitoring: monitoringService };

describe('values.yaml against values.schema.json', () => {
  test('the shipped values are valid', () => {
    const validate = validator();
    const valid = validate(values);
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
  });

  const broken: Array<[string, (v: any) => void]> = [
    ['a misspelled component field', (v) => (v.components.signing.replica = 3)],
    ['a port out of range', (v) => (v.components.device.ports[0].value = 70000)],
    ['a port name longer than 15 characters', (v) => (v.components.device.ports[0].name = 'grpc-for-devices-x')],
    ['an env entry with neither value nor valueFrom', (v) => v.components.monitoring.env.push({ name: 'X' })],
    ['an env value that is a number, not a string', (v) => (v.components.monitoring.env[0].value = 50053)],
    ['a probe with two handlers', (v) => (v.components.signing.readinessProbe.tcpSocket = { port: 50051 })],
    ['a bootstrap token shorter than signing accepts', (v) => (v.secrets.signingBootstrapToken = 'short')],
    ['a component key that is not a DNS label', (v) => (v.components.Gateway2 = { enabled: false })],
    ['a component without enabled', (v) => delete v.components.redis.enabled],
    ['a persistent StatefulSet without a size', (v) => delete v.components.nats.persistence.size],
    ['an unknown kind', (v) => (v.components.redis.kind = 'DaemonSet')],
  ];
  test.each(broken)('rejects %s', (_, breakIt) => {
    const copy = structuredClone(values);
    breakIt(copy);
    expect(validator()(copy)).toBe(false);
  });
});

describe.each(enabled)('component %s', (name, c) => {
  const env = effectiveEnv(name, c);
  const ports = c.ports ?? [];

  test('has an image and unique port names and numbers', () => {
    const repository = c.imageOverride?.repository ?? values.default.image.repository;
    const tag = c.imageOverride?.tag || values.default.image.tag || chart.appVersion;
    expect(`${repository}:${tag}`).toMatch(/^[a-z0-9][a-z0-9._\/-]*:[A-Za-z0-9._-]+$/);
    expect(new Set(ports.map((p) => p.name)).size).toBe(ports.length);
    expect(new Set(ports.map((p) => p.value)).size).toBe(ports.length);
  });

  test('env: unique names, $(VAR) defined earlier, secrets from the chart Secret', () => {
    const names = env.map((v) => v.name);
    expect(new Set(names).size).toBe(names.length);
    env.forEach((v, i) => {
      for (const [, ref] of (v.value ?? '').matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) expect(names.slice(0, i)).toContain(ref);
      const secret = v.valueFrom?.secretKeyRef;
      if (secret?.name === NATS_AUTH_SECRET) expect(NATS_AUTH_KEYS).toContain(secret.key);
      else if (secret) {
        expect(secret.name).toBe(SECRET_NAME);
        expect(secretKeys()).toContain(secret.key);
      }
    });
  });

  test('env: every Service it names is an enabled component, on a port that component has', () => {
    const prefix = `${FULLNAME}-`;
    for (const v of env) {
      for (const [, target, port] of (v.value ?? '').matchAll(new RegExp(`${prefix}([a-z][-a-z0-9]*?)(?::(\\d+)|\\b)(?![-a-z0-9])`, 'g'))) {
        const other = components[target];
        expect({ variable: v.name, target, enabled: other?.enabled }).toEqual({ variable: v.name, target, enabled: true });
        if (port) expect((other.ports ?? []).map((p) => p.value)).toContain(Number(port));
      }
      // Host/port pairs (the gateway's SIGNING_HOST + SIGNING_PORT).
      if (v.name.endsWith('_HOST') && v.value?.startsWith(prefix)) {
        const portVar = env.find((p) => p.name === v.name.replace(/_HOST$/, '_PORT'));
        const target = v.value.slice(prefix.length);
        expect((components[target].ports ?? []).map((p) => String(p.value))).toContain(portVar?.value);
      }
    }
  });

  test('probes point at ports it declares', () => {
    for (const probe of [c.readinessProbe, c.livenessProbe].filter(Boolean) as Array<Record<string, any>>) {
      const port = probe.grpc?.port ?? probe.httpGet?.port ?? probe.tcpSocket?.port;
      if (port === undefined) continue;
      if (typeof port === 'number') expect(ports.map((p) => p.value)).toContain(port);
      else expect(ports.map((p) => p.name)).toContain(port);
    }
  });

  test('its command runs files the image builds from this repository', () => {
    if (c.imageOverride) return; // a third-party image
    expect(c.command?.[0]).toBe('node');
    const build = JSON.parse(fs.readFileSync(repoPath('tsconfig.build.json'), 'utf8').replace(/\/\/.*$/gm, ''));
    for (const arg of c.command!.slice(1).filter((a) => a.startsWith('dist/'))) {
      const source = repoPath(arg.replace(/^dist\//, '').replace(/\.js$/, '.ts'));
      expect(fs.existsSync(source)).toBe(true);
      expect(source).not.toMatch(/\/test\//);
      expect(build.exclude).not.toContain(path.relative(repoPath(), source).split(path.sep)[0]);
    }
  });
});

describe.each(Object.entries(SERVICES))('service %s in the chart', (name, spec) => {
  const c = components[name];
  const env = effectiveEnv(name, c);
  const shape = serviceShape(spec as never);

  test('listens where its Service, probe and GRPC_PORT say', () => {
    const grpc = c.ports!.find((p) => p.name === 'grpc')!;
    expect(env.find((v) => v.name === 'GRPC_PORT')?.value).toBe(String(grpc.value));
    expect(c.readinessProbe?.grpc?.port).toBe(grpc.value);
    // Readiness asks the whole server (""), which follows only required dependencies:
    // never `dependencies` or `dependency.<name>`, which also go NOT_SERVING for Redis.
    expect(c.readinessProbe?.grpc?.service ?? '').toBe('');
    expect(env.find((v) => v.name === 'GRPC_HOST')?.value).toBe('0.0.0.0');
    const metrics = env.find((v) => v.name === 'METRICS_PORT')?.value;
    expect(c.ports!.map((p) => String(p.value))).toContain(metrics);
  });

  test('every variable it gets is one it reads, and every variable it requires is set', () => {
    const given = env.map((v) => v.name);
    const helpers = new Set(env.flatMap((v) => [...(v.value ?? '').matchAll(/\$\(([A-Za-z_0-9]+)\)/g)].map((m) => m[1])));
    for (const variable of given) {
      if (variable.startsWith('OTEL_') || helpers.has(variable)) continue;
      expect({ variable, known: variable in shape }).toEqual({ variable, known: true });
    }
    for (const [variable, parser] of Object.entries(shape)) {
      if (!parser.safeParse(undefined).success) expect(given).toContain(variable);
    }
  });

  test('its values parse with its own configuration schema', () => {
    for (const v of env) {
      if (!(v.name in shape) || v.value === undefined) continue;
      const value = v.value.replace(/\$\(([A-Za-z_0-9]+)\)/g, 'example');
      const parsed = shape[v.name].safeParse(value);
      expect({ variable: v.name, ok: parsed.success }).toEqual({ variable: v.name, ok: true });
    }
  });
});

describe('gateway in the chart', () => {
  test('every variable it gets is one the gateway reads', () => {
    const sources = ['main.ts', 'upstreams.ts'].map((f) => fs.readFileSync(repoPath('gateway', 'src', f), 'utf8')).join('\n');
    const known = new Set([...sources.matchAll(/\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b/g)].map((m) => m[1]));
    // Upstream addresses are read per cluster of the route table: `<CLUSTER>_HOST` / `<CLUSTER>_PORT`.
    for (const cluster of buildRouteTable().clusters) for (const suffix of ['HOST', 'PORT']) known.add(`${cluster.envPrefix}_${suffix}`);
    for (const v of components.gateway.env ?? []) expect({ variable: v.name, known: known.has(v.name) }).toEqual({ variable: v.name, known: true });
  });
});

describe('templates', () => {
  const all = Object.values(templates).join('\n');
  const valuesStrings = JSON.stringify(values);

  test('every include names a define, and template actions balance', () => {
    const defined = new Set([...all.matchAll(/define "([^"]+)"/g)].map((m) => m[1]));
    // A path with a slash is nats.conf's own include directive (checked with nats-server below), not Helm's.
    const included = [...(all + valuesStrings).matchAll(/include \\?"([^"\\]+)\\?"/g)].map((m) => m[1]).filter((name) => !name.includes('/'));
    for (const name of included) expect({ name, defined: defined.has(name) }).toEqual({ name, defined: true });
    for (const [file, text] of Object.entries(templates)) {
      expect({ file, open: text.split('{{').length, close: text.split('}}').length }).toEqual({ file, open: text.split('}}').length, close: text.split('}}').length });
      const actions = [...text.matchAll(/\{\{-?\s*(\/\*[\s\S]*?\*\/|[a-z]+)/g)].map((m) => m[1]);
      const blocks = actions.filter((a) => ['if', 'range', 'with', 'define'].includes(a)).length;
      expect({ file, blocks, ends: actions.filter((a) => a === 'end').length }).toEqual({ file, blocks, ends: blocks });
    }
  });

  test('every .Values path the templates and tpl values read exists in values.yaml', () => {
    for (const [, pathText] of (all + valuesStrings).matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
      let node: any = values;
      for (const key of pathText.slice(1).split('.')) {
        expect({ path: pathText, has: node !== null && typeof node === 'object' && key in node }).toEqual({ path: pathText, has: true });
        node = node[key];
      }
    }
  });

  test('the schema declares every component field the templates read, and the templates read every one it declares', () => {
    const code = templates['_component.tpl'] + templates['_helpers.tpl'];
    const read = new Set([...code.matchAll(/(?:\$config|\.config)\.([A-Za-z]+)/g)].map((m) => m[1]));
    const declared = new Set(Object.keys(schema.definitions.component.properties));
    expect([...read].filter((f) => !declared.has(f))).toEqual([]);
    // `enabled` is read by components.yaml's loop.
    expect([...declared].filter((f) => !read.has(f) && !(f === 'enabled' && templates['components.yaml'].includes('$config.enabled')))).toEqual([]);
  });
});

describe('the NATS configuration', () => {
  /**
   * Renders nats.conf for a replica count the way the template in values.yaml
   * does (the cluster block only for more than one replica, one route per
   * pod), then asks nats-server itself whether the file is valid.
   */
  function renderNatsConf(replicas: number, storeDir: string): string {
    const lines = components.nats.configuration!.files['nats.conf'].split('\n');
    const out: string[] = [];
    let inCluster = false;
    let rangeBody: string[] | undefined;
    for (const line of lines) {
      if (line.includes('$nats :=')) continue;
      if (/\{\{- if gt \(int \$nats\.replicas\) 1 \}\}/.test(line)) {
        inCluster = true;
        continue;
      }
      if (/\{\{- range \$i := until \(int \$nats\.replicas\) \}\}/.test(line)) {
        rangeBody = [];
        continue;
      }
      if (/\{\{- end \}\}/.test(line)) {
        if (rangeBody) {
          if (replicas > 1) for (let i = 0; i < replicas; i++) out.push(...rangeBody.map((l) => l.replace(/\{\{ \$i \}\}/g, String(i))));
          rangeBody = undefined;
        } else inCluster = false;
        continue;
      }
      const rendered = line
        .replace(/\{\{ include "iot-mesh\.fullname" \$ \}\}/g, FULLNAME)
        .replace('/data/jetstream', storeDir)
        .replace('/data/jwt', path.join(storeDir, '..', 'jwt'));
      expect(rendered.replace('{{ $i }}', '')).not.toContain('{{');
      if (rangeBody) rangeBody.push(rendered);
      else if (!inCluster || replicas > 1) out.push(rendered);
    }
    return out.join('\n');
  }

  test.each([1, 3])('is valid for nats-server with %i replica(s), JetStream and MQTT on', (replicas) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-chart-nats-'));
    try {
      // The pod's layout: nats.conf in the ConfigMap's folder, natsAuth's Secret (as `npm run setup:nats` writes it) in its own.
      const confDir = path.join(dir, path.basename(components.nats.configuration!.mountPath));
      fs.mkdirSync(confDir);
      const authMount = components.nats.secretMounts!.find((m) => m.name === 'nats-auth')!;
      writeKubernetesSecretFiles(generateOperatorSetup('chart-test'), path.join(dir, path.basename(authMount.mountPath)));
      expect(path.dirname(authMount.mountPath)).toBe(path.dirname(components.nats.configuration!.mountPath));
      expect(fs.readdirSync(path.join(dir, path.basename(authMount.mountPath))).sort()).toEqual([...NATS_AUTH_KEYS].sort());
      const text = renderNatsConf(replicas, path.join(dir, 'js'));
      expect(text).toMatch(/^\s*include "\.\.\/nats-auth\/auth\.conf"$/m);
      expect(text).toMatch(/resolver: \{ type: full/);
      expect(text).toMatch(/jetstream \{/);
      expect(text).toMatch(/mqtt \{\s*listen: 0\.0\.0\.0:1883/);
      expect((text.match(/nats:\/\/rel-iot-mesh-nats-\d\.rel-iot-mesh-nats-headless:6222/g) ?? []).length).toBe(replicas > 1 ? replicas : 0);
      const file = path.join(confDir, 'nats.conf');
      fs.writeFileSync(file, text);
      const result = spawnSync('nats-server', ['-c', file, '-t'], { cwd: dir, env: { ...process.env, POD_NAME: `${FULLNAME}-nats-0` }, encoding: 'utf8' });
      expect({ status: result.status, output: result.stderr + result.stdout }).toEqual({ status: 0, output: expect.stringContaining('is valid') });
      const ports = Object.fromEntries(components.nats.ports!.map((p) => [p.name, p.value]));
      expect(text).toContain(`listen: 0.0.0.0:${ports.client}`);
      expect(text).toContain(`http: 0.0.0.0:${ports.monitor}`);
      if (replicas > 1) expect(text).toContain(`listen: 0.0.0.0:${ports.cluster}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the clustered shape', () => {
  test('NATS runs three pods in operator mode from the natsAuth Secret, which every service mounts for its creds', () => {
    expect(components.nats.replicas).toBe(3);
    expect(values.natsAuth.secretName).toBe('');
    expect(templates['_helpers.tpl']).toContain('define "iot-mesh.natsAuthSecretName"');
    for (const name of ['nats', ...Object.keys(SERVICES)]) {
      const mounts = components[name].secretMounts ?? [];
      expect({ name, secrets: mounts.map((m) => renderValue(m.secretName)) }).toEqual({ name, secrets: [NATS_AUTH_SECRET] });
    }
    const credsDir = components.signing.secretMounts![0].mountPath;
    expect(effectiveEnv('monitoring', components.monitoring).find((v) => v.name === 'NATS_CREDS')?.value).toBe(`${credsDir}/service.creds`);
    const device = effectiveEnv('device', components.device);
    expect(device.find((v) => v.name === 'DEVICE_NATS_SYSTEM_CREDS')?.value).toBe(`${credsDir}/system.creds`);
    for (const variable of ['DEVICE_NATS_OPERATOR_SIGNING_SEED', 'DEVICE_NATS_PLATFORM_ACCOUNT', 'DEVICE_NATS_TENANT_KEY_SECRET']) {
      expect(device.find((v) => v.name === variable)?.valueFrom?.secretKeyRef?.name).toBe(NATS_AUTH_SECRET);
    }
  });

  test('the platform streams get three replicas on the NATS cluster', () => {
    expect(effectiveEnv('monitoring', components.monitoring).find((v) => v.name === 'TELEMETRY_STREAM_REPLICAS')?.value).toBe('3');
    expect(effectiveEnv('device', components.device).find((v) => v.name === 'DEVICE_DIRECTORY_REPLICAS')?.value).toBe('3');
    expect(templates['_helpers.tpl']).toMatch(/define "iot-mesh\.streamReplicas" -\}\}\n\{\{- if gt \(int \.Values\.components\.nats\.replicas\) 1 \}\}3\{\{ else \}\}1\{\{ end \}\}/);
  });

  test('two replicas of every service, and a PodDisruptionBudget (one pod away at a time) for every replicated component', () => {
    for (const name of Object.keys(SERVICES)) expect({ name, replicas: components[name].replicas }).toEqual({ name, replicas: 2 });
    const tpl = templates['_component.tpl'];
    const budget = tpl.slice(tpl.indexOf('define "iot-mesh.disruptionBudget"'), tpl.indexOf('define "iot-mesh.service"'));
    expect(budget).toContain('{{- if gt (int ($config.replicas | default 1)) 1 }}');
    expect(budget).toContain('kind: PodDisruptionBudget');
    expect(budget).toContain('maxUnavailable: 1');
    expect(budget).toContain('include "iot-mesh.selectorLabels" .');
    expect(templates['components.yaml']).toContain('{{- include "iot-mesh.disruptionBudget" $component }}');
  });

  test('the gateway allows no foreign browser origin unless gatewayCorsOrigins names it', () => {
    expect(values.gatewayCorsOrigins).toBe('');
    const gateway = effectiveEnv('gateway', components.gateway);
    expect(gateway.find((v) => v.name === 'GATEWAY_CORS_ORIGINS')?.value).toBe('');
    expect(gateway.some((v) => v.value === '*')).toBe(false);
  });
});

describe('isolation of the stores and the network', () => {
  test('Redis requires the password from the chart Secret, keeps protected mode on, and every service connects with it', () => {
    const redis = components.redis;
    const command = redis.command!;
    expect(command[command.indexOf('--protected-mode') + 1]).toBe('yes');
    expect(command[command.indexOf('--requirepass') + 1]).toBe('$(REDIS_PASSWORD)');
    expect(effectiveEnv('redis', redis).find((v) => v.name === 'REDIS_PASSWORD')?.valueFrom?.secretKeyRef).toEqual({ name: SECRET_NAME, key: 'redis-password' });
    expect(secretKeys()).toContain('redis-password');
    for (const name of Object.keys(SERVICES)) {
      const env = effectiveEnv(name, components[name]);
      expect(env.find((v) => v.name === 'REDIS_URL')?.value).toBe(`redis://:$(REDIS_PASSWORD)@${FULLNAME}-redis:6379`);
    }
    // The password goes into the URL unescaped: the schema allows only letters and digits.
    expect(validator()({ ...structuredClone(values), secrets: { ...values.secrets, redisPassword: 'a@b' } })).toBe(false);
  });

  interface IngressRule {
    ports: string[];
    fromAnywhere?: boolean;
    fromComponents?: string[];
    from?: Record<string, unknown>[];
  }
  const policies = values.networkPolicies as { enabled: boolean; ingress: Record<string, IngressRule[]> };

  test('NetworkPolicies are on and cover every enabled component with ports (the rest are denied by default)', () => {
    expect(policies.enabled).toBe(true);
    expect(templates['networkpolicies.yaml']).toMatch(/default-deny[\s\S]*policyTypes: \[Ingress\]/);
    for (const [name, c] of enabled) if ((c.ports ?? []).length > 0) expect({ name, covered: name in policies.ingress }).toEqual({ name, covered: true });
  });

  test('from anywhere only the edge and the device listeners; PostgreSQL and Redis only from the services that use them', () => {
    const open = Object.entries(policies.ingress).flatMap(([name, rules]) => rules.filter((r) => r.fromAnywhere).flatMap((r) => r.ports.map((p) => `${name}/${p}`)));
    expect(open.sort()).toEqual(['gateway/http', 'nats/client', 'nats/mqtt']);
    for (const store of ['postgresql', 'redis']) {
      expect(policies.ingress[store]).toEqual([{ ports: [components[store].ports![0].name], fromComponents: ['signing', 'device', 'monitoring'] }]);
    }
  });

  test('every rule names ports its component declares, components that exist, and some source', () => {
    for (const [name, rules] of Object.entries(policies.ingress)) {
      expect({ name, exists: name in components }).toEqual({ name, exists: true });
      for (const rule of rules) {
        for (const port of rule.ports) expect({ name, port, declared: (components[name].ports ?? []).some((p) => p.name === port) }).toEqual({ name, port, declared: true });
        for (const from of rule.fromComponents ?? []) expect({ from, exists: from in components }).toEqual({ from, exists: true });
        expect(Boolean(rule.fromAnywhere) || (rule.fromComponents ?? []).length + (rule.from ?? []).length > 0).toBe(true);
      }
    }
  });
});
