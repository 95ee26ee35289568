import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { repoPath } from '@iot-mesh/runtime';
import { startSigningForTest, TestSigning, TestTenant } from '../../testing/signing';

const execFileAsync = promisify(execFile);
/** Debian's interpreter, where python3-grpcio and python3-protobuf install. */
const PYTHON = process.env.PYTHON ?? '/usr/bin/python3';

/* The README's Python grpcio call (scripts/grpc-python-example.py) against a real signing service. */
describe('Python grpcio client', () => {
  let signing: TestSigning;
  let tenant: TestTenant;
  let available = true;

  beforeAll(async () => {
    available = await execFileAsync(PYTHON, ['-c', 'import grpc, google.protobuf']).then(
      () => true,
      () => false,
    );
    if (!available) {
      console.warn(`skipped: ${PYTHON} has no grpcio/protobuf (apt-get install python3-grpcio python3-protobuf)`);
      return;
    }
    signing = await startSigningForTest();
    tenant = await signing.createTenant();
  });
  afterAll(async () => {
    await signing?.stop();
  });

  it('logs in and calls WhoAmI with messages from the descriptor set', async () => {
    if (!available) return;
    const { stdout } = await execFileAsync(PYTHON, [repoPath('scripts', 'grpc-python-example.py'), signing.address, tenant.tenantName, tenant.admin.email, tenant.admin.password]);
    expect(stdout).toContain("'role': 'ROLE_ADMIN'");
    expect(stdout).toContain(`'tenantId': '${tenant.tenantId}'`);
  });
});
