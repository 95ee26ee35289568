import { EnvShape, RunningService, ServiceContext, ServiceSpec, startService } from '@iot-mesh/runtime';

/** A service started in-process for a test, already SERVING. */
export interface TestService<S extends EnvShape> {
  running: RunningService<S>;
  ctx: ServiceContext<S>;
  /** `127.0.0.1:<port>` */
  address: string;
  stop(): Promise<void>;
}

/**
 * Starts a service spec in this process on a free port with the given
 * environment (LOG_LEVEL defaults to silent) and waits until it is ready.
 */
export async function startTestService<S extends EnvShape>(spec: ServiceSpec<S>, environment: Record<string, string>): Promise<TestService<S>> {
  const running = await startService(spec, { LOG_LEVEL: 'silent', GRPC_PORT: '0', SHUTDOWN_GRACE_MS: '1000', ...environment });
  const ctx = await running.ready;
  return { running, ctx, address: `127.0.0.1:${running.port}`, stop: () => running.stop() };
}
