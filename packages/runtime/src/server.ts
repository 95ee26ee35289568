import { Server, ServerCredentials } from '@grpc/grpc-js';
import { readDescriptorSet } from './repo-paths';
import { addReflection, DescriptorIndex } from './reflection';
import { toServiceError, GrpcCode } from './errors';
import { HealthMonitor } from './health';
import { Logger } from './logger';
import { grpcServerMetrics } from './observability/grpc-server-metrics';
import { Middleware, ServiceRegistration, toGrpcImplementation, withTolerantDecoders } from './rpc';

/** Logs every failed call once, with the cause for server-side failures only. */
export function errorLogging(): Middleware {
  return async (ctx, _request, next) => {
    try {
      return await next();
    } catch (err) {
      const serviceError = toServiceError(err);
      if (serviceError.code === GrpcCode.INTERNAL || serviceError.code === GrpcCode.UNKNOWN) {
        const cause = serviceError.cause as Error | undefined;
        ctx.log.error({ err: cause ? { message: cause.message, stack: cause.stack } : serviceError.message }, 'call failed');
      } else if (serviceError.code === GrpcCode.UNAVAILABLE) {
        ctx.log.warn({ code: serviceError.code, message: serviceError.message }, 'call failed');
      } else {
        ctx.log.debug({ code: serviceError.code, message: serviceError.message }, 'call rejected');
      }
      throw serviceError;
    }
  };
}

/** The health service every server carries (grpc.health.v1, from the grpc-health-check package). */
const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

/** A bound gRPC server carrying health and reflection; business services are added later. */
export class GrpcServer {
  readonly server: Server;
  readonly health: HealthMonitor;
  private servicesAdded = false;
  port = 0;

  constructor(private readonly log: Logger, healthIntervalMs: number) {
    this.server = new Server({
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.keepalive_time_ms': 30_000,
      // HTTP/2 streams one connection may have open at once (server streams and unary calls alike).
      'grpc.max_concurrent_streams': 1000,
    });
    this.health = new HealthMonitor(log, healthIntervalMs);
    this.health.implementation.addToServer(this.server);
  }

  /** Binds host:port (port 0 picks a free one) and starts serving. */
  async listen(host: string, port: number): Promise<number> {
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    return this.port;
  }

  /**
   * Adds the business services behind the middleware chain (once), and lists
   * them, with health, in health checks and server reflection.
   */
  addServices(registrations: ServiceRegistration[], middlewares: Middleware[]): void {
    if (this.servicesAdded) throw new Error('addServices may be called once');
    this.servicesAdded = true;
    const chain = [grpcServerMetrics(registrations), errorLogging(), ...middlewares];
    for (const registration of registrations) {
      this.server.addService(withTolerantDecoders(registration.definition) as never, toGrpcImplementation(registration, chain, this.log));
      this.health.addService(registration.name);
    }
    // Reflection serves the descriptor set as `buf build` wrote it (one file
    // per proto, with its imports), so any client resolves every type.
    const index = new DescriptorIndex(readDescriptorSet());
    const services = [HEALTH_SERVICE_NAME, ...registrations.map((r) => r.name)];
    const undeclared = services.filter((name) => !index.hasService(name));
    if (undeclared.length > 0) this.log.warn({ services: undeclared }, 'services missing from the descriptor set: reflection cannot describe them (run `npm run generate`)');
    addReflection(this.server, index, services);
  }

  /**
   * Stops accepting calls, lets in-flight ones finish for up to `graceMs`,
   * then cancels whatever is left (long-lived streams).
   */
  async shutdown(graceMs: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn({ graceMs }, 'grace period over, cancelling remaining calls');
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
