/**
 * Creates the platform tenant and its first admin on a running signing
 * service (AuthService.Bootstrap). There is no default password: give one in
 * BOOTSTRAP_ADMIN_PASSWORD or on stdin (`--password-stdin`), or let the
 * command generate one and print it once.
 *
 *   SIGNING_BOOTSTRAP_TOKEN=… npm run bootstrap -- --email admin@example.com [--tenant platform]
 *     [--display-name "Platform admin"] [--address 127.0.0.1:50051] [--password-stdin]
 */
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import { AuthServiceClient } from '../../../../gen/ts/iot/signing/v1/auth';
import { DEFAULT_SIGNING_ADDRESS, insecureClient, unary } from '@iot-mesh/runtime';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      tenant: { type: 'string', default: 'platform' },
      email: { type: 'string' },
      'display-name': { type: 'string', default: 'Platform admin' },
      address: { type: 'string', default: process.env.SIGNING_ADDRESS ?? DEFAULT_SIGNING_ADDRESS },
      'password-stdin': { type: 'boolean', default: false },
    },
  });
  const token = process.env.SIGNING_BOOTSTRAP_TOKEN;
  if (!token) {
    console.error('bootstrap: set SIGNING_BOOTSTRAP_TOKEN to the value the signing service was started with');
    return 2;
  }
  if (!values.email) {
    console.error('bootstrap: --email is required');
    return 2;
  }
  let password = process.env.BOOTSTRAP_ADMIN_PASSWORD ?? '';
  let generated = false;
  if (values['password-stdin']) password = await readStdin();
  if (!password) {
    password = crypto.randomBytes(18).toString('base64url');
    generated = true;
  }
  const client = insecureClient(AuthServiceClient, values.address!);
  try {
    const res = await unary(client, client.bootstrap, {
      bootstrapToken: token,
      tenantName: values.tenant!,
      adminEmail: values.email,
      adminPassword: password,
      adminDisplayName: values['display-name']!,
    });
    console.log(`Bootstrapped tenant "${res.tenant?.name}" (${res.tenant?.id}) with admin ${res.admin?.email} (${res.admin?.id}).`);
    if (generated) console.log(`Generated password (shown once, store it now): ${password}`);
    return 0;
  } catch (err) {
    console.error(`bootstrap failed: ${(err as { details?: string; message: string }).details ?? (err as Error).message}`);
    return 1;
  } finally {
    client.close();
  }
}

main().then((code) => process.exit(code));
