import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { Alert, AlertService, AlertState } from '../../gen/es/iot/monitoring/v1/alerts_pb';
import { StreamLiveRequestSchema, StreamLiveResponseSchema, TelemetryService } from '../../gen/es/iot/monitoring/v1/telemetry_pb';
import { eventually, jsonPayload, MonitoringWorld, startWorld } from '@iot-mesh/monitoring/test-harness';
import { startSigningForTest, TestSigning, TestTenant } from '../../testing/signing';
import { grpcWebTextStream, grpcWebTransport, rest, startTestGateway } from './gateway-harness';

/* Round trips through the Node gateway to a real monitoring service (own database and nats-server) and signing. */
describe('gateway ↔ monitoring', () => {
  let signing: TestSigning;
  let world: MonitoringWorld;
  let tenant: TestTenant;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;
  // Aligned to 10 minutes, so 2-minute buckets hold two points each.
  const start = Math.floor(Date.now() / 600_000) * 600_000 - 20 * 60_000;

  beforeAll(async () => {
    signing = await startSigningForTest();
    world = await startWorld({ SIGNING_ADDRESS: signing.address, ALERT_CHECK_INTERVAL_MS: '100' });
    tenant = await signing.createTenant();
    await world.registerDevice(tenant.tenantId, 'pump-1');
    await world.registerDevice(tenant.tenantId, 'pump-2');
    gateway = await startTestGateway({ signing: signing.address, monitoring: world.services[0].service.address });
    const points = Array.from({ length: 6 }, (_, i) => ({ metric: 'temperature', time: new Date(start + i * 60_000).toISOString(), numberValue: 20 + i }));
    await world.publish(tenant.tenantId, 'pump-1', jsonPayload({ messageId: 'seed', points }));
    await eventually(async () => (await world.rowCount(tenant.tenantId)) >= 6, 'seed rows');
  }, 120_000);

  afterAll(async () => {
    await gateway?.close();
    await world?.close();
    await signing?.stop();
  });

  describe('REST', () => {
    it('reads latest values with repeated query parameters', async () => {
      const res = await rest(gateway.base, 'GET', '/v1/telemetry/latest?deviceIds=pump-1&device_ids=pump-2&metrics=temperature', { authorization: tenant.viewer.authorization });
      expect(res.status).toBe(200);
      expect(res.json.points).toEqual([{ deviceId: 'pump-1', metric: 'temperature', time: new Date(start + 5 * 60_000).toISOString().replace('.000Z', 'Z'), value: { numberValue: 25 } }]);
    });

    it('queries bucketed history with timestamps, durations, enums and int64 from the URL', async () => {
      const query = new URLSearchParams({
        metrics: 'temperature',
        'timeRange.start': new Date(start).toISOString(),
        'time_range.end': new Date(start + 6 * 60_000).toISOString(),
        bucketWidth: '120s',
      });
      query.append('aggregations', 'AGGREGATION_MAX');
      query.append('aggregations', '5'); // AGGREGATION_COUNT by number
      const res = await rest(gateway.base, 'GET', `/v1/devices/pump-1/history?${query}`, { authorization: tenant.viewer.authorization });
      expect(res.status).toBe(200);
      expect(res.json.bucketWidth).toBe('120s');
      const byAggregation = Object.fromEntries(res.json.series.map((s: { aggregation: string; buckets: unknown[] }) => [s.aggregation, s.buckets]));
      expect(byAggregation.AGGREGATION_MAX.map((b: { value: number }) => b.value)).toEqual([21, 23, 25]);
      // int64 keeps its precision as a JSON string.
      expect(byAggregation.AGGREGATION_COUNT.map((b: { count: string }) => b.count)).toEqual(['2', '2', '2']);
    });

    it('pages raw points', async () => {
      const first = await rest(gateway.base, 'GET', '/v1/devices/pump-1/points?page.pageSize=4', { authorization: tenant.viewer.authorization });
      expect(first.json.points).toHaveLength(4);
      const second = await rest(gateway.base, 'GET', `/v1/devices/pump-1/points?page.pageSize=4&page.pageToken=${encodeURIComponent(first.json.page.nextPageToken)}`, { authorization: tenant.viewer.authorization });
      expect(second.json.points).toHaveLength(2);
    });

    it('maps errors: invalid argument, permission denied, not found, unauthenticated', async () => {
      const invalid = await rest(gateway.base, 'GET', '/v1/devices/pump-1/history?maxPoints=-1', { authorization: tenant.viewer.authorization });
      expect(invalid).toMatchObject({ status: 400, json: { code: Code.InvalidArgument } });
      const denied = await rest(gateway.base, 'POST', '/v1/alert-rules', { authorization: tenant.viewer.authorization, body: { name: 'x', metric: 'temperature', threshold: { comparison: 'COMPARISON_GREATER_THAN', threshold: 1 } } });
      expect(denied).toMatchObject({ status: 403, json: { code: Code.PermissionDenied } });
      const missing = await rest(gateway.base, 'GET', '/v1/alert-rules/00000000-0000-0000-0000-000000000000', { authorization: tenant.viewer.authorization });
      expect(missing).toMatchObject({ status: 404, json: { code: Code.NotFound } });
      const anonymous = await rest(gateway.base, 'GET', '/v1/alerts');
      expect(anonymous).toMatchObject({ status: 401, json: { code: Code.Unauthenticated } });
    });
  });

  describe('gRPC-Web server streams', () => {
    it('streams live points in binary gRPC-Web as they are published', async () => {
      const telemetry = createClient(TelemetryService, grpcWebTransport(gateway.base));
      const abort = new AbortController();
      const stream = telemetry.streamLive({ deviceIds: ['pump-2'] }, { signal: abort.signal, headers: { authorization: tenant.viewer.authorization } });
      const received: number[] = [];
      const publisher = (async () => {
        // Publish until the stream has seen a point: the subscription opens asynchronously.
        for (let i = 0; i < 200 && received.length === 0; i++) {
          await world.publish(tenant.tenantId, 'pump-2', jsonPayload({ points: [{ metric: 'pressure', numberValue: 1.5 + i }] }));
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      for await (const res of stream) {
        for (const p of res.points) if (p.value?.kind.case === 'numberValue') received.push(p.value.kind.value);
        if (received.length > 0) break;
      }
      abort.abort();
      await publisher;
      expect(received[0]).toBeGreaterThanOrEqual(1.5);
      await eventually(() => world.services[0].stats.live.openStreams === 0, 'the service-side stream to close after the browser left');
    });

    it('streams live points in grpc-web-text', async () => {
      let stop = false;
      const result = await grpcWebTextStream(
        gateway.base,
        '/iot.monitoring.v1.TelemetryService/StreamLive',
        StreamLiveRequestSchema,
        StreamLiveResponseSchema,
        { deviceIds: ['pump-2'], metrics: ['flow'] },
        { authorization: tenant.viewer.authorization },
        (messages) => messages.some((m) => m.points.length > 0),
        async () => {
          void (async () => {
            for (let i = 0; i < 200 && !stop; i++) {
              await world.publish(tenant.tenantId, 'pump-2', jsonPayload({ points: [{ metric: 'flow', numberValue: 7 }] }));
              await new Promise((r) => setTimeout(r, 50));
            }
          })();
        },
      );
      stop = true;
      expect(result.contentType).toBe('application/grpc-web-text+proto');
      expect(result.messages.flatMap((m) => m.points)[0]).toMatchObject({ deviceId: 'pump-2', metric: 'flow' });
    });

    it('ends a stream with the service status when it is refused', async () => {
      const telemetry = createClient(TelemetryService, grpcWebTransport(gateway.base));
      const failure = await (async () => {
        try {
          for await (const _ of telemetry.streamLive({ deviceIds: ['pump-1'] })) return undefined;
        } catch (err) {
          return err as ConnectError;
        }
        return undefined;
      })();
      expect(failure?.code).toBe(Code.Unauthenticated);
    });

    it('raises, streams and acknowledges alerts across REST and gRPC-Web', async () => {
      const rule = await rest(gateway.base, 'POST', '/v1/alert-rules', {
        authorization: tenant.admin.authorization,
        body: { name: 'hot', metric: 'temperature', deviceIds: ['pump-1'], threshold: { comparison: 'COMPARISON_GREATER_THAN', threshold: 50 }, severity: 'SEVERITY_CRITICAL', enabled: true },
      });
      expect(rule.status).toBe(200);
      expect(rule.json.rule).toMatchObject({ name: 'hot', severity: 'SEVERITY_CRITICAL' });
      const fetched = await rest(gateway.base, 'GET', `/v1/alert-rules/${rule.json.rule.id}`, { authorization: tenant.viewer.authorization });
      expect(fetched.json.rule.threshold.threshold).toBe(50);

      const alerts = createClient(AlertService, grpcWebTransport(gateway.base));
      const abort = new AbortController();
      const stream = alerts.streamAlerts({}, { signal: abort.signal, headers: { authorization: tenant.operator.authorization } });
      // The stream subscribes asynchronously: cross the threshold back and forth until it carries a raised alert.
      let streamedAlert: Alert | undefined;
      const publisher = (async () => {
        for (let i = 0; i < 100 && !streamedAlert; i++) {
          await world.publish(tenant.tenantId, 'pump-1', jsonPayload({ points: [{ metric: 'temperature', numberValue: 80 }] }));
          await new Promise((r) => setTimeout(r, 150));
          await world.publish(tenant.tenantId, 'pump-1', jsonPayload({ points: [{ metric: 'temperature', numberValue: 10 }] }));
          await new Promise((r) => setTimeout(r, 150));
        }
      })();
      for await (const res of stream) {
        if (res.alert?.state === AlertState.RAISED) {
          streamedAlert = res.alert;
          break;
        }
      }
      abort.abort();
      await publisher;
      const streamed = { alert: streamedAlert! };
      expect(streamed.alert).toMatchObject({ ruleId: rule.json.rule.id, deviceId: 'pump-1', value: 80 });

      const listed = await rest(gateway.base, 'GET', '/v1/alerts?unacknowledgedOnly=true&page.pageSize=1000', { authorization: tenant.viewer.authorization });
      expect(listed.json.alerts.map((a: { id: string }) => a.id)).toContain(streamed.alert.id);
      const acked = await rest(gateway.base, 'POST', `/v1/alerts/${streamed.alert.id}:acknowledge`, { authorization: tenant.operator.authorization, body: {} });
      expect(acked.status).toBe(200);
      expect(acked.json.alert.acknowledgeTime).toBeTruthy();
      const after = await rest(gateway.base, 'GET', '/v1/alerts?unacknowledgedOnly=true', { authorization: tenant.viewer.authorization });
      expect(after.json.alerts?.map((a: { id: string }) => a.id) ?? []).not.toContain(streamed.alert.id);
    });
  });
});
