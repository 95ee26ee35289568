import { reportedPort, waitForReportedPort } from '../reported-port';

describe('a port a child process reports (scripts/reported-port.ts)', () => {
  const log = [
    '(node:1) ExperimentalWarning: something',
    '{"level":30,"msg":"connecting to postgres","port":5432}',
    '{"level":30,"port":41234,"msg":"grpc listening (NOT_SERVING until ready)"}',
    '{"level":30,"port":41235,"msg":"metrics at /metrics"}',
    'ts=2026-01-01T00:00:00Z level=info component=web msg="Listening on" address=127.0.0.1:39999',
  ].join('\n');

  test('reads the port of the first JSON line whose msg starts with the report, skipping other lines', () => {
    expect(reportedPort(log, 'grpc listening')).toBe(41234);
    expect(reportedPort(log, 'metrics at /metrics')).toBe(41235);
    // "listening" appears in a msg, but no msg starts with it.
    expect(reportedPort(log, 'listening')).toBeUndefined();
    expect(reportedPort('{"msg":"grpc listening"}', 'grpc listening')).toBeUndefined();
  });

  test('reads the first group of a pattern, for programs that log otherwise', () => {
    expect(reportedPort(log, /msg="Listening on" address=127\.0\.0\.1:(\d+)/)).toBe(39999);
    expect(reportedPort('nothing yet', /address=127\.0\.0\.1:(\d+)/)).toBeUndefined();
  });

  test('waits for the line to appear, and names the exit when the process ends first', async () => {
    let output = '';
    setTimeout(() => (output += '{"msg":"gateway listening","port":8123}\n'), 100);
    await expect(waitForReportedPort(() => output, 'gateway listening', { timeoutMs: 5_000 })).resolves.toBe(8123);
    await expect(waitForReportedPort(() => '', 'grpc listening', { timeoutMs: 5_000, failed: () => 'exited (exit code 1)' })).rejects.toThrow(/exited \(exit code 1\)/);
  });
});
