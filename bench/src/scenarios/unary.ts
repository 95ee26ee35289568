import http from 'node:http';
import { DeviceServiceClient, GetDeviceRequest, GetDeviceResponse } from '../../../gen/ts/iot/device/v1/device';
import { insecureClient, unary } from '@iot-mesh/runtime';
import { echoLoad, startEchoServer } from '../baselines';
import { closedLoop, Latencies } from '../measure';
import { emptyResult, Scenario } from '../scenario';

/** GET over keep-alive HTTP/1.1, resolving with the status and body. */
function get(agent: http.Agent, url: string, authorization: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers: { authorization, accept: 'application/json' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve({ status: 200, body }) : reject(new Error(`HTTP ${res.statusCode}: ${body.slice(0, 200)}`))));
    });
    req.on('error', reject);
  });
}

function qps(r: { latencies: Latencies; seconds: number }): number {
  return r.latencies.count / r.seconds;
}

/**
 * Scenario 3: an authenticated device lookup (GetDevice with a bearer access
 * token: token verified against the cached JWKS, role check, Redis-cached
 * read) directly over gRPC and through the Node gateway's REST route, each
 * with the same number of calls in flight; baseline a bare grpc-js echo
 * server in its own process answering the same sizes.
 */
export const unaryScenario: Scenario = {
  name: 'unary',
  title: 'unary RPC: authenticated GetDevice direct and through the Node gateway vs a bare grpc-js echo',
  async run(ctx) {
    const platform = await ctx.platform();
    const concurrency = ctx.smoke ? 10 : 100;
    const durationMs = ctx.smoke ? 1000 : 10_000;
    const result = emptyResult(this, { concurrency, seconds: durationMs / 1000 });
    const { figures, notes } = result;
    const [device] = await platform.devices('unary', 1, 'mqtt');
    const authorization = platform.authorization!;
    const client = insecureClient(DeviceServiceClient, platform.device!.address);
    const echo = await startEchoServer();
    const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
    try {
      const request: GetDeviceRequest = { id: device.deviceId };
      const sample = await unary(client, client.getDevice, request, { authorization });
      const requestBytes = Buffer.from(GetDeviceRequest.encode(request).finish());
      const responseBytes = GetDeviceResponse.encode(sample).finish().length;

      ctx.log(`  bare echo (${requestBytes.length} B in, ${responseBytes} B out)…`);
      const bare = await echoLoad(echo.address, requestBytes, concurrency, durationMs);
      ctx.log('  GetDevice direct…');
      await closedLoop(concurrency, ctx.smoke ? 200 : 1000, () => unary(client, client.getDevice, request, { authorization })); // warm-up
      const direct = await closedLoop(concurrency, durationMs, () => unary(client, client.getDevice, request, { authorization }));
      ctx.log('  GetDevice through the gateway (REST)…');
      const url = `${platform.gateway!.url}/v1/devices/${encodeURIComponent(device.deviceId)}`;
      await closedLoop(concurrency, ctx.smoke ? 200 : 1000, () => get(agent, url, authorization));
      const viaGateway = await closedLoop(concurrency, durationMs, () => get(agent, url, authorization));

      const b = bare.latencies.summary();
      const d = direct.latencies.summary();
      const g = viaGateway.latencies.summary();
      const judge = (ok: boolean) => (ctx.smoke ? undefined : ok);
      figures.push(
        { measure: 'direct: calls/s', value: qps(direct), unit: 'calls/s', baseline: 'bare grpc-js echo', baselineValue: qps(bare), target: '≥ 0.7 × bare', met: judge(qps(direct) >= 0.7 * qps(bare)) },
        { measure: 'direct: p50', value: d.p50, unit: 'ms', baseline: 'bare grpc-js echo', baselineValue: b.p50 },
        { measure: 'direct: p99', value: d.p99, unit: 'ms', baseline: 'bare grpc-js echo', baselineValue: b.p99, target: '≤ 1.5 × bare', met: judge(d.p99 <= 1.5 * b.p99) },
        { measure: 'gateway REST: calls/s', value: qps(viaGateway), unit: 'calls/s', baseline: 'bare grpc-js echo', baselineValue: qps(bare), target: '≥ 0.5 × bare', met: judge(qps(viaGateway) >= 0.5 * qps(bare)) },
        { measure: 'gateway REST: p50', value: g.p50, unit: 'ms', baseline: 'bare grpc-js echo', baselineValue: b.p50 },
        { measure: 'gateway REST: p99', value: g.p99, unit: 'ms', baseline: 'bare grpc-js echo', baselineValue: b.p99, target: '≤ 2 × bare', met: judge(g.p99 <= 2 * b.p99) },
      );
      const errors = [['echo', bare], ['direct', direct], ['gateway', viaGateway]] as const;
      for (const [name, r] of errors) if (r.errors > 0) notes.push(`${name}: ${r.errors} failed calls (first: ${r.firstError})`);
      notes.push(`${concurrency} calls in flight from one client process; direct over one HTTP/2 connection, gateway over ${concurrency} keep-alive HTTP/1.1 connections`);
    } finally {
      agent.destroy();
      client.close();
      await echo.stop();
    }
    return result;
  },
};
