import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoPath } from '@iot-mesh/runtime';
import { buildOpenApi, openApiPath } from '../src/openapi';
import { rest, startTestGateway, table } from './gateway-harness';

const execFileAsync = promisify(execFile);

/* The OpenAPI document against the route table, a maintained validator and a gateway that must answer every operation. */
describe('OpenAPI document', () => {
  const document = buildOpenApi(table);
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;

  beforeAll(async () => {
    // No upstream answers: every routed operation fails connecting upstream, never with "no route".
    gateway = await startTestGateway({});
  });
  afterAll(async () => {
    await gateway?.close();
  });

  it('is valid OpenAPI 3.1 for @seriousme/openapi-schema-validator', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'openapi-'));
    const file = path.join(dir, 'openapi.json');
    fs.writeFileSync(file, JSON.stringify(document));
    try {
      // The validator is ESM-only: its own CLI runs it outside jest's module system.
      const { stdout } = await execFileAsync(process.execPath, [repoPath('node_modules', '@seriousme', 'openapi-schema-validator', 'bin', 'validate-api-cli.js'), file]);
      expect(JSON.parse(stdout.slice(stdout.indexOf('{')))).toMatchObject({ valid: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('has exactly one operation per REST binding of the route table, with security from the access option', () => {
    const fromTable = table.methods.flatMap((m) => m.http.map((b) => `${b.verb} ${openApiPath(b)} ${m.access}`)).sort();
    const fromDocument = Object.entries(document.paths)
      .flatMap(([p, ops]) => Object.entries(ops).map(([verb, op]) => `${verb.toUpperCase()} ${p} ${op['x-iot-access'] as string}`))
      .sort();
    expect(fromDocument).toEqual(fromTable);
    for (const ops of Object.values(document.paths)) {
      for (const op of Object.values(ops)) {
        if (op['x-iot-access'] === 'public') expect(op.security).toEqual([]);
        else if (op['x-iot-access'] === 'device_credential') expect(op.security).toEqual([{ deviceCredential: [] }]);
        else expect(op.security).toEqual([{ bearer: [] }, { apiKey: [] }]);
        const responses = op.responses as Record<string, { content: Record<string, { schema: unknown }> }>;
        expect(responses.default.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/google.rpc.Status' });
      }
    }
  });

  it('describes bodies, responses and query parameters in proto3 JSON', () => {
    const create = document.paths['/v1/devices'].post as { requestBody: { content: Record<string, { schema: unknown }> } };
    expect(create.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/iot.device.v1.Device' });
    const device = document.components.schemas['iot.device.v1.Device'] as { properties: Record<string, unknown> };
    expect(device.properties.lastSeenTime).toMatchObject({ type: 'string', format: 'date-time' });
    expect(device.properties.labels).toMatchObject({ type: 'object', additionalProperties: { type: 'string' } });
    const list = document.paths['/v1/devices'].get as { parameters: Array<{ name: string; style?: string }> };
    expect(list.parameters.map((p) => p.name)).toEqual(expect.arrayContaining(['page.page_size', 'page.page_token', 'labels', 'name_prefix', 'status']));
    expect(list.parameters.find((p) => p.name === 'labels')).toMatchObject({ style: 'deepObject' });
  });

  it('is served at /openapi.json, with the reference page at /docs/ from node_modules', async () => {
    const served = await rest(gateway.base, 'GET', '/openapi.json');
    expect(served.status).toBe(200);
    expect(served.json).toEqual(JSON.parse(JSON.stringify(document)));
    const page = await fetch(`${gateway.base}/docs/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('swagger-ui-bundle.js');
    const bundle = await fetch(`${gateway.base}/docs/swagger-ui-bundle.js`);
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get('content-type')).toContain('javascript');
    await bundle.arrayBuffer();
    expect((await fetch(`${gateway.base}/docs`, { redirect: 'manual' })).status).toBe(308);
  });

  it('routes every operation of the document (nothing answers 404 or 405)', async () => {
    const answered: string[] = [];
    for (const [template, ops] of Object.entries(document.paths)) {
      const url = template.replace(/\{[^}]+\}/g, 'sample-id');
      for (const verb of Object.keys(ops)) {
        const res = await rest(gateway.base, verb.toUpperCase(), url, verb === 'get' || verb === 'delete' ? {} : { body: {} });
        // Routed means: parsed into the RPC's request and sent upstream, where nothing listens.
        answered.push(`${verb.toUpperCase()} ${template} → ${String(res.json?.message).includes('ECONNREFUSED') ? 'sent upstream' : `${res.status} ${res.json?.message}`}`);
      }
    }
    expect(answered).toHaveLength(table.methods.reduce((n, m) => n + m.http.length, 0));
    expect(answered.filter((a) => !a.endsWith('→ sent upstream'))).toEqual([]);
  });
});
