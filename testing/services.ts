import { EnvShape, RunningService, ServiceContext, ServiceSpec, startService } from '@iot-mesh/runtime';
import { testServiceEnv } from './test-services';

/** A service started in-process for a test, already SERVING. */
export interface TestService<S extends EnvShape> {
  running: RunningService<S>;
  ctx: ServiceContext<S>;
  /** `127.0.0.1:<port>` */
  address: string;
  stop(): Promise<void>;
}

/**
 * Starts a service spec in this process with the given environment and
 * waits until it is ready. It binds port 0 (the kernel picks a free one) and
 * reports the port it bound. LOG_LEVEL defaults to silent; DATABASE_URL,
 * REDIS_URL and NATS_URL default to the test run's servers.
 */
export async function startTestService<S extends EnvShape>(spec: ServiceSpec<S>, environment: Record<string, string>): Promise<TestService<S>> {
  const running = await startService(spec, { ...testServiceEnv(), LOG_LEVEL: 'silent', GRPC_PORT: '0', SHUTDOWN_GRACE_MS: '1000', ...environment });
  const ctx = await running.ready;
  return { running, ctx, address: `127.0.0.1:${running.port}`, stop: () => running.stop() };
}
