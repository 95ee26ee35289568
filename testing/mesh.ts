import { deviceService } from '@iot-mesh/device';
import { MonitoringWorld, startWorld } from '@iot-mesh/monitoring/test-harness';
import { startOperatorNats } from './nats-operator';
import { createTestDatabase } from './postgres';
import { startTestService, TestService } from './services';
import { startSigningForTest, TestSigning } from './signing';

/** Signing, device and monitoring running in this process, each on its own free port, wired to one signing. */
export interface TestMesh {
  signing: TestSigning;
  /** The device service, on an operator-mode nats-server of its own (so it can mint device credentials). */
  device: TestService<never>;
  /** The monitoring service with its own nats-server and database (see `@iot-mesh/monitoring/test-harness`). */
  monitoring: MonitoringWorld;
  /** gRPC addresses by service name. */
  addresses: { signing: string; device: string; monitoring: string };
  stop(): Promise<void>;
}

/**
 * Starts the three services against real PostgreSQL, Redis and NATS, as a
 * client outside the mesh sees them. Whatever started is stopped again when
 * a later part fails, so a failed start leaks no server. `environment` is
 * added to every service's (e.g. limits a test wants out of its way).
 */
export async function startMeshForTest(environment: Record<string, string> = {}): Promise<TestMesh> {
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  };
  try {
    const signing = await startSigningForTest({ env: environment });
    stops.push(() => signing.stop());
    const [nats, db] = await Promise.all([startOperatorNats(), createTestDatabase('iot_mesh_device')]);
    stops.push(() => nats.stop(), () => db.drop());
    const device = (await startTestService(deviceService, {
      DATABASE_URL: db.url,
      SIGNING_ADDRESS: signing.address,
      ...nats.deviceEnv(),
      ...environment,
    })) as TestService<never>;
    stops.push(() => device.stop());
    const monitoring = await startWorld({ SIGNING_ADDRESS: signing.address, ALERT_CHECK_INTERVAL_MS: '100', ...environment });
    stops.push(() => monitoring.close());
    return {
      signing,
      device,
      monitoring,
      addresses: { signing: signing.address, device: device.address, monitoring: monitoring.services[0].service.address },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
