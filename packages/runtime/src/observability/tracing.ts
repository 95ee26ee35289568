import { diag, ProxyTracerProvider, trace } from '@opentelemetry/api';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { NodeSDK, NodeSDKConfiguration } from '@opentelemetry/sdk-node';
import path from 'node:path';
import { registerTelemetryFlush } from './telemetry-flush';

/**
 * Whether the environment asks for spans to be exported: an OTLP endpoint is
 * set, or OTEL_TRACES_EXPORTER names an exporter other than `none`.
 */
export function tracesExporterConfigured(environment: NodeJS.ProcessEnv = process.env): boolean {
  const exporters = (environment.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (exporters.length > 0) return !exporters.every((e) => e === 'none');
  return Boolean(environment.OTEL_EXPORTER_OTLP_ENDPOINT || environment.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/**
 * The `service.name` of this process when OTEL_SERVICE_NAME is not set:
 * `iot-<service>` from the entry script's path (`services/device/…` →
 * `iot-device`, `gateway/…` → `iot-gateway`), else the script's name.
 */
export function defaultServiceName(script: string | undefined = process.argv[1]): string {
  if (!script) return 'iot-mesh';
  const parts = path.resolve(script).split(path.sep);
  const services = parts.lastIndexOf('services');
  if (services >= 0 && parts[services + 1]) return `iot-${parts[services + 1]}`;
  for (const component of ['gateway', 'simulator', 'bench']) if (parts.includes(component)) return `iot-${component}`;
  return `iot-${path.basename(script).replace(/\.[cm]?[jt]s$/, '')}`;
}

/** gRPC methods not worth a span: health probes and reflection. */
const UNTRACED_GRPC_METHODS = ['Check', 'Watch', 'ServerReflectionInfo'];
/** HTTP paths not worth a span: Prometheus scrapes and probes. */
const UNTRACED_HTTP_PATHS = /^\/(metrics|healthz|readyz|livez)(\?|$)/;

let started: NodeSDK | undefined;

/**
 * Starts the OpenTelemetry Node SDK for this process, configured by the
 * standard OTEL_* variables, with instrumentation for grpc-js, pg, ioredis
 * and node:http. Must run before those modules are loaded (see
 * `tracing-entry.ts`). Without an exporter configured no tracer provider is
 * installed: spans are not recorded, incoming trace context still passes
 * through, and nothing is sent anywhere. OTLP metrics and logs stay off
 * unless OTEL_METRICS_EXPORTER / OTEL_LOGS_EXPORTER ask for them (metrics go
 * to Prometheus). Returns the SDK, or undefined when OTEL_SDK_DISABLED is set.
 */
export function startTracing(environment: NodeJS.ProcessEnv = process.env): NodeSDK | undefined {
  if (started) return started;
  if (/^(true|1)$/i.test(environment.OTEL_SDK_DISABLED ?? '')) return undefined;
  const configuration: Partial<NodeSDKConfiguration> = {
    instrumentations: [
      new GrpcInstrumentation({ ignoreGrpcMethods: UNTRACED_GRPC_METHODS }),
      // Queries outside any call (health probes, pool checks) would each be a trace of their own.
      new PgInstrumentation({ requireParentSpan: true, enhancedDatabaseReporting: false }),
      new IORedisInstrumentation({ requireParentSpan: true }),
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (request) => UNTRACED_HTTP_PATHS.test(request.url ?? ''),
        requireParentforOutgoingSpans: true,
      }),
    ],
  };
  if (!environment.OTEL_SERVICE_NAME) configuration.serviceName = defaultServiceName();
  if (!tracesExporterConfigured(environment)) configuration.spanProcessors = [];
  if (!environment.OTEL_METRICS_EXPORTER) configuration.metricReaders = [];
  if (!environment.OTEL_LOGS_EXPORTER) configuration.logRecordProcessors = [];
  const sdk = new NodeSDK(configuration);
  sdk.start();
  started = sdk;
  registerTelemetryFlush(async () => {
    const global = trace.getTracerProvider();
    const provider = (global instanceof ProxyTracerProvider ? global.getDelegate() : global) as { forceFlush?: () => Promise<void> };
    await provider.forceFlush?.();
  });
  diag.debug('tracing started');
  return sdk;
}

/** Flushes and stops the SDK started by {@link startTracing}. */
export async function stopTracing(): Promise<void> {
  const sdk = started;
  started = undefined;
  await sdk?.shutdown();
}
