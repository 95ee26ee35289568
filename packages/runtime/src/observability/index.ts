/** Metrics, tracing and log correlation shared by every process. */
export * from './grpc-client-metrics';
export * from './grpc-codes';
export * from './grpc-server-metrics';
export * from './metrics-registry';
export * from './metrics-server';
export * from './pg-pool-metrics';
export * from './log-trace-fields';
export * from './nats-tracing';
export * from './telemetry-flush';
export * from './http-tracing';
export * from './cache-metrics';
