import crypto from 'node:crypto';
import { repoPath } from '../../src/repo-paths';
import { createTestDatabase } from '../../../../testing/postgres';
import { OtlpReceiver } from './otlp-receiver';
import { isPostgres, SERVER, waitServing } from './trace-helpers';
import { otelEnv, startTracedProcess, TracedProcess } from './traced-process';

describe('a browser call traced through the gateway', () => {
  it('continues the browser\'s trace in the gateway\'s HTTP span, the service\'s gRPC span under it, and the query under that', async () => {
    const receiver = await OtlpReceiver.start();
    const db = await createTestDatabase();
    // Each process binds port 0 and logs (at info) the port it bound.
    const echo = startTracedProcess(repoPath('packages', 'runtime', 'test', 'fixtures', 'echo-service.ts'), { ...otelEnv(receiver.endpoint, 'echo'), GRPC_PORT: '0', DATABASE_URL: db.url, LOG_LEVEL: 'info' });
    let gateway: TracedProcess | undefined;
    try {
      const echoPort = await echo.reportedPort();
      // The echo fixture serves iot.device.v1 services, so the gateway's device cluster points at it.
      gateway = startTracedProcess(repoPath('gateway', 'src', 'main.ts'), {
        ...otelEnv(receiver.endpoint, 'iot-gateway'),
        GATEWAY_PORT: '0',
        DEVICE_PORT: String(echoPort),
        METRICS_PORT: '0',
        LOG_LEVEL: 'info',
      });
      await waitServing(`127.0.0.1:${echoPort}`, echo);
      const gatewayPort = await gateway.reportedPort('gateway listening');
      const metricsPort = await gateway.reportedPort('metrics at /metrics');
      const browserTrace = crypto.randomBytes(16).toString('hex');
      const browserSpan = crypto.randomBytes(8).toString('hex');
      const response = await fetch(`http://127.0.0.1:${gatewayPort}/v1/devices/gwnone/twin`, { headers: { traceparent: `00-${browserTrace}-${browserSpan}-01` } });
      expect(response.status).toBe(404);

      const spans = await receiver.waitFor('gateway, service and query spans of the browser trace', (all) => {
        const server = all.find((s) => s.service === 'echo' && s.kind === SERVER && s.traceId === browserTrace);
        return !!server && all.some((s) => s.service === 'iot-gateway' && s.traceId === browserTrace) && all.some((s) => s.parentSpanId === server.spanId && isPostgres(s));
      });
      const gatewaySpan = spans.find((s) => s.service === 'iot-gateway' && s.kind === SERVER && s.traceId === browserTrace)!;
      expect(gatewaySpan.parentSpanId).toBe(browserSpan);
      expect(gatewaySpan.attributes['http.response.status_code'] ?? gatewaySpan.attributes['http.status_code']).toBe(404);
      const serviceSpan = spans.find((s) => s.service === 'echo' && s.kind === SERVER && s.traceId === browserTrace)!;
      expect(serviceSpan.parentSpanId).toBe(gatewaySpan.spanId);
      expect(serviceSpan.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'iot.device.v1.TwinService', 'rpc.method': 'GetTwin' });
      expect(spans.some((s) => s.parentSpanId === serviceSpan.spanId && isPostgres(s) && /^pg\.query/.test(s.name))).toBe(true);

      // The gateway serves its process metrics too.
      const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(await metrics.text()).toMatch(/^process_cpu_seconds_total /m);
    } finally {
      await gateway?.stop();
      await echo.stop();
      await receiver.close();
      await db.drop();
    }
  }, 60_000);
});

