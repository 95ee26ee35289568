/*
 * Issue 13 at the edge: the client address the services see is the gateway's
 * socket peer, never a client's claim (finding 5); the dashboard is served
 * with CSP, X-Frame-Options and nosniff, and CORS allows no other origin
 * unless configured (finding 9).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoPath, repoRoot, unary } from '@iot-mesh/runtime';
import { startSigningForTest, TestSigning, TestTenant } from '../../testing/signing';
import { corsOriginsFromEnv } from '../src/edge-policy';
import { DASHBOARD_CSP } from '../src/security-headers';
import { forwardedHeaders } from '../src/upstreams';
import { rest, startTestGateway, launchChromium, logInOnPage } from './gateway-harness';

let signing: TestSigning;
let tenant: TestTenant;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let dashboard: string;
let script: string;

/** The flags headless Debian chromium needs on these machines (as in dashboard-browser.test.ts). */

beforeAll(async () => {
  dashboard = fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-'));
  // A fresh build of the real dashboard, so the CSP is tried against what ships.
  const built = promisify(execFile)(process.execPath, [repoPath('node_modules', 'vite', 'bin', 'vite.js'), 'build', 'gateway/web', '--outDir', dashboard, '--emptyOutDir', '--logLevel', 'error'], { cwd: repoRoot() });
  // Signing trusts the edge's x-forwarded-for, as it does in production behind it.
  signing = await startSigningForTest({ env: { SIGNING_TRUST_FORWARDED_FOR: 'true' } });
  tenant = await signing.createTenant();
  await built;
  script = `/assets/${fs.readdirSync(path.join(dashboard, 'assets')).find((f) => f.endsWith('.js'))}`;
  gateway = await startTestGateway({ signing: signing.address }, corsOriginsFromEnv({}), dashboard);
}, 60000);
afterAll(async () => {
  await gateway?.close();
  await signing?.stop();
  fs.rmSync(dashboard, { recursive: true, force: true });
});

describe('the client address', () => {
  test('a client-sent x-forwarded-for (and its relatives) is replaced by the socket peer', () => {
    const headers = forwardedHeaders(new Headers({ 'x-forwarded-for': '203.0.113.9, 10.0.0.1', 'x-real-ip': '203.0.113.9', forwarded: 'for=203.0.113.9', authorization: 'Bearer x' }), '::ffff:192.0.2.44');
    expect(headers.get('x-forwarded-for')).toBe('192.0.2.44');
    expect(headers.get('x-real-ip')).toBeNull();
    expect(headers.get('forwarded')).toBeNull();
    expect(headers.get('authorization')).toBe('Bearer x');
    // Without a peer (a closed socket) the client's claim is still not passed on.
    expect(forwardedHeaders(new Headers({ 'x-forwarded-for': '203.0.113.9' }), undefined).get('x-forwarded-for')).toBeNull();
  });

  test('a login through the gateway with a forged x-forwarded-for is audited (and throttled) with the real address', async () => {
    const res = await rest(gateway.base, 'POST', '/v1/auth:login', {
      body: { tenant: tenant.tenantName, email: tenant.viewer.email, password: 'wrong-password-x' },
      headers: { 'x-forwarded-for': '203.0.113.9' },
    });
    expect(res.status).toBe(401);
    const events = await unary(signing.clients.audit, signing.clients.audit.listAuditEvents, { type: 'login.failed' }, { authorization: tenant.admin.authorization });
    expect(events.events.map((e) => e.sourceAddress)).toEqual(['127.0.0.1']);
  });
});

describe('dashboard responses', () => {
  test.each(['/', '/index.html', '/devices/some-client-route', 'the script'])('%s carries CSP, X-Frame-Options DENY and nosniff', async (urlPath) => {
    const res = await fetch(`${gateway.base}${urlPath === 'the script' ? script : urlPath}`, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toBe(DASHBOARD_CSP);
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    await res.arrayBuffer();
  });

  test('the dashboard works under its CSP: a user logs in in Chromium and no policy violation is reported', async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const violations: string[] = [];
      page.on('console', (m) => {
        if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
      });
      await page.exposeFunction('reportViolation', (v: string) => violations.push(v));
      // Runs in the page (a string: this file is compiled without DOM types).
      await page.addInitScript({ content: "document.addEventListener('securitypolicyviolation', (e) => window.reportViolation(e.violatedDirective + ' ' + e.blockedURI));" });
      await logInOnPage(page, gateway.base, tenant.tenantName, tenant.admin);
      expect(violations).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 60000);

  test('the CSP allows only the dashboard’s own origin and forbids framing', () => {
    expect(DASHBOARD_CSP).toContain("default-src 'self'");
    expect(DASHBOARD_CSP).toContain("frame-ancestors 'none'");
    expect(DASHBOARD_CSP).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
  });
});

describe('CORS', () => {
  test('the default is same origin only; GATEWAY_CORS_ORIGINS lists the others', () => {
    expect(corsOriginsFromEnv({})).toEqual([]);
    expect(corsOriginsFromEnv({ GATEWAY_CORS_ORIGINS: 'https://a.example, https://b.example' })).toEqual(['https://a.example', 'https://b.example']);
    expect(corsOriginsFromEnv({ CORS_ALLOWED_ORIGINS: 'https://old.example' })).toEqual(['https://old.example']);
  });

  test('by default a page of another origin gets neither a preflight nor a readable response', async () => {
    const preflight = await fetch(`${gateway.base}/v1/auth:login`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    expect(preflight.status).toBe(403);
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    const simple = await rest(gateway.base, 'GET', '/.well-known/jwks.json', { headers: { origin: 'https://evil.example' } });
    expect(simple.headers.get('access-control-allow-origin')).toBeNull();
  });
});
