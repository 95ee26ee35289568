import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { insecureClient, repoPath, unary } from '@iot-mesh/runtime';
import { AuthServiceClient } from '../../../gen/ts/iot/signing/v1/auth';
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';
import { startTestService, TestService } from '../../../testing/services';
import { signingEnv, signingService } from '../src/main';

let database: TestDatabase;
let service: TestService<typeof signingEnv>;
const bootstrapToken = crypto.randomBytes(32).toString('hex');

beforeAll(async () => {
  database = await createTestDatabase('iot_signing_boot');
  service = await startTestService(signingService, {
    DATABASE_URL: database.url,
    SIGNING_HTTP_PORT: '0',
    SIGNING_BOOTSTRAP_TOKEN: bootstrapToken,
    SIGNING_REDIS_PREFIX: `iot:test:signing-boot:${crypto.randomBytes(4).toString('hex')}:`,
  });
}, 30000);
afterAll(async () => {
  await service?.stop();
  await database?.drop();
});

function runCommand(args: string[], env: Record<string, string>, stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', repoPath('services', 'signing', 'src', 'api', 'bootstrap-command.ts'), ...args], {
      cwd: repoPath(),
      env: { PATH: process.env.PATH, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdin.end(stdin ?? '');
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

test('npm run bootstrap creates the first admin once, with the password given on stdin', async () => {
  const password = `first-boss-${crypto.randomBytes(8).toString('hex')}`;
  const common = ['--address', service.address, '--email', 'Admin@Example.com', '--tenant', 'platform'];

  const noToken = await runCommand(common, {});
  expect(noToken.code).toBe(2);
  expect(noToken.stderr).toMatch(/SIGNING_BOOTSTRAP_TOKEN/);

  const first = await runCommand([...common, '--password-stdin'], { SIGNING_BOOTSTRAP_TOKEN: bootstrapToken }, `${password}\n`);
  expect(first.stderr).toBe('');
  expect(first.code).toBe(0);
  expect(first.stdout).toMatch(/Bootstrapped tenant "platform"/);
  expect(first.stdout).not.toContain(password);

  const auth = insecureClient(AuthServiceClient, service.address);
  try {
    const login = await unary(auth, auth.login, { tenant: 'platform', email: 'admin@example.com', password });
    const me = await unary(auth, auth.whoAmI, {}, { authorization: `Bearer ${login.tokens!.accessToken}` });
    expect(me.principal?.platformAdmin).toBe(true);
  } finally {
    auth.close();
  }

  const second = await runCommand(common, { SIGNING_BOOTSTRAP_TOKEN: bootstrapToken });
  expect(second.code).toBe(1);
  expect(second.stderr).toMatch(/already bootstrapped/);
}, 60000);
