/**
 * Side-effect entry: starts OpenTelemetry before anything else is loaded, so
 * grpc-js, pg, ioredis and http are instrumented when the service requires
 * them. Use it as the first module of the process:
 *
 *   node --import tsx --import ./packages/runtime/src/observability/tracing-entry.ts services/device/src/main.ts
 *
 * Configuration is by the standard OTEL_* variables (see the README's
 * "Operating it" section); with none set nothing is exported.
 */
import { startTracing } from './tracing';

startTracing();
