import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { repoPath, repoRoot } from '@iot-mesh/runtime';
import { startMeshForTest, TestMesh } from '../../testing/mesh';
import { deviceService } from '@iot-mesh/device';
import { startOperatorNats } from '../../testing/nats-operator';
import { createTestDatabase } from '../../testing/postgres';
import { startTestService, TestService } from '../../testing/services';
import { startSigningForTest, TestSigning, TestTenant } from '../../testing/signing';
import { create, DescMessage, fromBinary, MessageInitShape, MessageShape, toBinary } from '@bufbuild/protobuf';
import { createGrpcWebTransport } from '@connectrpc/connect-node';
import { Gateway, GatewayOptions, startGateway } from '../src/gateway';
import { buildRouteTable, RouteTable } from '../src/route-table';

/** The route table of the generated descriptor set, built once per test file. */
export const table: RouteTable = buildRouteTable();

/** An address nothing listens on (port 1 is never ours). */
export const UNREACHABLE = '127.0.0.1:1';

/** Starts a Node gateway on a free port in front of the given services. */
export async function startTestGateway(
  upstreams: Partial<Record<'signing' | 'device' | 'monitoring', string>>,
  corsOrigins = ['*'],
  staticDir?: string,
  extra: Pick<GatewayOptions, 'onError' | 'onClientClosed'> = {},
): Promise<Gateway & { base: string }> {
  const gateway = await startGateway({
    ...extra,
    table,
    upstreams: { signing: UNREACHABLE, device: UNREACHABLE, monitoring: UNREACHABLE, ...upstreams },
    corsOrigins,
    port: 0,
    staticDir,
  });
  return { ...gateway, base: `http://127.0.0.1:${gateway.port}` };
}

/** A gRPC-Web (binary) transport to the gateway, as a browser would use. */
export function grpcWebTransport(base: string) {
  return createGrpcWebTransport({ baseUrl: base, httpVersion: '1.1' });
}

/** What a REST call returned. */
export interface RestResponse {
  status: number;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

/** One REST call with an optional JSON body and Authorization header. */
export async function rest(base: string, method: string, path: string, options: { body?: unknown; authorization?: string; headers?: Record<string, string> } = {}): Promise<RestResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.authorization) headers.authorization = options.authorization;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: res.status, json, headers: res.headers };
}

/** The gRPC-Web frames of a body: messages (flag 0) and the trailer block (flag 0x80). */
function parseFrames(bytes: Buffer): { messages: Buffer[]; trailers: Record<string, string> } {
  const messages: Buffer[] = [];
  const trailers: Record<string, string> = {};
  let at = 0;
  while (at + 5 <= bytes.length) {
    const flag = bytes[at];
    const length = bytes.readUInt32BE(at + 1);
    if (at + 5 + length > bytes.length) break; // the rest has not arrived yet
    const payload = bytes.subarray(at + 5, at + 5 + length);
    at += 5 + length;
    if (flag & 0x80) {
      for (const line of payload.toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        if (colon > 0) trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
    } else messages.push(payload);
  }
  return { messages, trailers };
}

/**
 * Calls a method with `application/grpc-web-text` by hand (base64 frames in
 * and out), as older grpc-web clients do; returns the decoded messages and
 * the trailers.
 */
export async function grpcWebText<I extends DescMessage, O extends DescMessage>(
  base: string,
  path: string,
  input: I,
  output: O,
  request: MessageInitShape<I>,
  headers: Record<string, string> = {},
): Promise<{ status: number; contentType: string | null; messages: MessageShape<O>[]; trailers: Record<string, string> }> {
  const payload = toBinary(input, create(input, request));
  const frame = Buffer.alloc(5 + payload.length);
  frame.writeUInt32BE(payload.length, 1);
  Buffer.from(payload).copy(frame, 5);
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/grpc-web-text', accept: 'application/grpc-web-text', 'x-grpc-web': '1', ...headers },
    body: frame.toString('base64'),
  });
  const text = await res.text();
  const { messages, trailers } = parseFrames(Buffer.from(text, 'base64'));
  return { status: res.status, contentType: res.headers.get('content-type'), messages: messages.map((m) => fromBinary(output, m)), trailers };
}

/**
 * Opens a server stream with `application/grpc-web-text` by hand and reads
 * base64 frames as they arrive until `enough(messages)`, then cancels.
 */
export async function grpcWebTextStream<I extends DescMessage, O extends DescMessage>(
  base: string,
  path: string,
  input: I,
  output: O,
  request: MessageInitShape<I>,
  headers: Record<string, string>,
  enough: (messages: MessageShape<O>[]) => boolean,
  onOpen: () => Promise<void>,
): Promise<{ contentType: string | null; messages: MessageShape<O>[] }> {
  const payload = toBinary(input, create(input, request));
  const frame = Buffer.alloc(5 + payload.length);
  frame.writeUInt32BE(payload.length, 1);
  Buffer.from(payload).copy(frame, 5);
  const abort = new AbortController();
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/grpc-web-text', accept: 'application/grpc-web-text', 'x-grpc-web': '1', ...headers },
    body: frame.toString('base64'),
    signal: abort.signal,
  });
  const reader = res.body!.getReader();
  let text = '';
  const messages: MessageShape<O>[] = [];
  let opened = false;
  try {
    while (!enough(messages)) {
      if (!opened) {
        opened = true;
        await onOpen();
      }
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('latin1');
      const whole = text.length - (text.length % 4);
      const { messages: raw } = parseFrames(Buffer.from(text.slice(0, whole), 'base64'));
      messages.splice(0, messages.length, ...raw.map((m) => fromBinary(output, m)));
    }
  } finally {
    abort.abort();
  }
  return { contentType: res.headers.get('content-type'), messages };
}

/** Signing, an operator-mode nats-server, a database and the device service behind a test gateway (REST tests of device routes). */
export interface DeviceGatewayWorld {
  signing: TestSigning;
  device: TestService<never>;
  tenant: TestTenant;
  gateway: Awaited<ReturnType<typeof startTestGateway>>;
  stop(): Promise<void>;
}

/** Starts a {@link DeviceGatewayWorld} with its own database `database` (and `deviceEnv` for the device service). */
export async function startDeviceGatewayWorld(database: string, deviceEnv: Record<string, string> = {}): Promise<DeviceGatewayWorld> {
  const [signing, nats, db] = await Promise.all([startSigningForTest(), startOperatorNats(), createTestDatabase(database)]);
  const device = (await startTestService(deviceService, { DATABASE_URL: db.url, SIGNING_ADDRESS: signing.address, ...nats.deviceEnv(), ...deviceEnv })) as TestService<never>;
  const tenant = await signing.createTenant();
  const gateway = await startTestGateway({ signing: signing.address, device: device.address }, ['*']);
  return {
    signing,
    device,
    tenant,
    gateway,
    async stop() {
      await gateway.close();
      await device.stop();
      await Promise.all([signing.stop(), nats.stop()]);
      await db.drop();
    },
  };
}

/**
 * Debian's Chromium (CHROMIUM_PATH to override), headless, with the flags this
 * closed network needs (no background networking, no component updates: their
 * refused connections otherwise pile up).
 */
export async function launchChromium(): Promise<Browser> {
  // Loaded here, not at the top: most tests using this harness never start a browser.
  const { chromium } = await import('playwright-core');
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
  return chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args, headless: true });
}

/** Where the browser tests leave their screenshots, kept as CI artefacts (test-results/ is gitignored). */
const SCREENSHOTS = repoPath('test-results', 'screenshots');

/** Saves a full-page screenshot of `page` as test-results/screenshots/`name`.png (the folder made when missing). */
export async function screenshot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Opens the console at `base` on `page`, logs `user` of tenant `tenantName` in through its form and waits until it shows who is signed in. */
export async function logInOnPage(page: Page, base: string, tenantName: string, user: { email: string; password: string }): Promise<void> {
  await page.goto(base);
  await page.fill('input[name=tenant]', tenantName);
  await page.fill('input[name=email]', user.email);
  await page.fill('input[name=password]', user.password);
  await page.click('button[type=submit]');
  await page.getByTestId('whoami').waitFor();
}

/** The console built into a temporary folder, served by a gateway in front of the whole mesh, and a Chromium to drive it. */
export interface ConsoleWorld {
  mesh: TestMesh;
  tenant: TestTenant;
  gateway: Awaited<ReturnType<typeof startTestGateway>>;
  browser: Browser;
  /** A new browser context (downloads accepted) logged in as `user` of the world's tenant. */
  logIn(user: { email: string; password: string }): Promise<Page>;
  close(): Promise<void>;
}

/** Builds the console (Vite) while the mesh starts, then starts the gateway serving it and Chromium. */
export async function startConsoleWorld(): Promise<ConsoleWorld> {
  const staticDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-console-'));
  const built = promisify(execFile)(process.execPath, [repoPath('node_modules', 'vite', 'bin', 'vite.js'), 'build', 'gateway/web', '--outDir', staticDir, '--emptyOutDir', '--logLevel', 'warn'], { cwd: repoRoot() });
  const mesh = await startMeshForTest();
  const tenant = await mesh.signing.createTenant();
  await built;
  const gateway = await startTestGateway(mesh.addresses, ['*'], staticDir);
  const browser = await launchChromium();
  return {
    mesh,
    tenant,
    gateway,
    browser,
    async logIn(user) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, acceptDownloads: true });
      const page = await context.newPage();
      await logInOnPage(page, gateway.base, tenant.tenantName, user);
      return page;
    },
    async close() {
      await browser.close().catch(() => undefined);
      await gateway.close();
      await mesh.stop();
      fs.rmSync(staticDir, { recursive: true, force: true });
    },
  };
}
