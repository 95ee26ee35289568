import { loadPackageDefinition, credentials, Metadata, ServiceError as GrpcError, status } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { BadRequest } from '../../../gen/ts/google/rpc/error_details';
import { Status } from '../../../gen/ts/google/rpc/status';
import { DeviceServiceClient, WatchDevicesResponse } from '../../../gen/ts/iot/device/v1/device';
import { TwinServiceClient } from '../../../gen/ts/iot/device/v1/twin';
import { checkHealth, insecureClient, serverStream, unary } from '../src';
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';
import { startTestService, TestService } from '../../../testing/services';
import { echoService, seenOrder, servedSignals } from './fixtures/echo-service';

describe('gRPC server through the runtime chain', () => {
  let db: TestDatabase;
  let service: TestService<{}>;
  let twins: TwinServiceClient;

  beforeAll(async () => {
    db = await createTestDatabase();
    service = await startTestService(echoService, { DATABASE_URL: db.url });
    twins = insecureClient(TwinServiceClient, service.address);
  });
  afterAll(async () => {
    twins.close();
    await service.stop();
    await db.drop();
  });

  it('round-trips a call through the middlewares to PostgreSQL, keeping 64-bit values exact', async () => {
    await unary(twins, twins.updateDesired, { deviceId: 'n1', desired: { body: 'hello' }, expectedVersion: 0n });
    seenOrder.length = 0;
    const response = await unary(twins, twins.getTwin, { deviceId: 'n1' });
    expect(response.twin?.desired).toEqual({ body: 'hello' });
    expect(response.twin?.desiredVersion).toBe(9007199254740993n);
    expect(seenOrder).toEqual(['first', 'second']);
  });

  it('answers invalid requests with INVALID_ARGUMENT and google.rpc.BadRequest field violations', async () => {
    const error = (await unary(twins, twins.getTwin, { deviceId: '' }).catch((e: GrpcError) => e)) as GrpcError;
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.details).toContain('device_id: is required');
    const [detailsBin] = error.metadata.get('grpc-status-details-bin') as Buffer[];
    const rpcStatus = Status.decode(detailsBin);
    expect(rpcStatus.code).toBe(status.INVALID_ARGUMENT);
    const badRequest = BadRequest.decode(rpcStatus.details[0].value);
    expect(rpcStatus.details[0].typeUrl).toBe('type.googleapis.com/google.rpc.BadRequest');
    expect(badRequest.fieldViolations.map((v) => v.field)).toEqual(['device_id']);
  });

  it('maps domain, driver and unexpected errors to status codes without leaking internals', async () => {
    const notFound = (await unary(twins, twins.getTwin, { deviceId: 'nope' }).catch((e: GrpcError) => e)) as GrpcError;
    expect(notFound.code).toBe(status.NOT_FOUND);
    const duplicate = (await unary(twins, twins.updateDesired, { deviceId: 'n1', expectedVersion: 0n }).catch((e: GrpcError) => e)) as GrpcError;
    expect(duplicate.code).toBe(status.ALREADY_EXISTS);
    const internal = (await unary(twins, twins.getTwin, { deviceId: 'boom' }).catch((e: GrpcError) => e)) as GrpcError;
    expect(internal.code).toBe(status.INTERNAL);
    expect(internal.details).toBe('internal error');
  });

  it('enforces the client deadline and aborts the handler', async () => {
    const error = (await unary(twins, twins.getTwin, { deviceId: 'slow' }, { deadlineMs: 200 }).catch((e: GrpcError) => e)) as GrpcError;
    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
    // The server is still healthy after the abandoned call.
    expect((await unary(twins, twins.getTwin, { deviceId: 'n1' })).twin?.deviceId).toBe('n1');
  });

  it("leaves a finished call alone when its deadline passes (the deadline's timer ends with the call)", async () => {
    servedSignals.length = 0;
    await unary(twins, twins.getTwin, { deviceId: 'n1' }, { deadlineMs: 100 });
    const [signal] = servedSignals;
    await new Promise((resolve) => setTimeout(resolve, 400));
    // A timer left running aborted every finished call at its deadline, building an error (and its stack) per call.
    expect(signal.aborted).toBe(false);
  });

  it('streams server-streaming responses', async () => {
    const devices = insecureClient(DeviceServiceClient, service.address);
    const received: WatchDevicesResponse[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = serverStream(devices, devices.watchDevices, { deviceIds: ['a', 'b', 'c'], labels: {} });
      stream.on('data', (message: WatchDevicesResponse) => received.push(message));
      stream.on('error', reject);
      stream.on('end', () => resolve());
    });
    devices.close();
    expect(received.map((r) => r.device?.id)).toEqual(['a', 'b', 'c']);
  });

  it('serves grpc.health.v1 for the server and each business service', async () => {
    expect(await checkHealth(service.address)).toBe('SERVING');
    expect(await checkHealth(service.address, 'iot.device.v1.TwinService')).toBe('SERVING');
  });

  it('lists its services over server reflection', async () => {
    const protoPath = path.join(path.dirname(require.resolve('@grpc/reflection')), '..', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');
    const definition = protoLoader.loadSync(protoPath, { keepCase: true });
    const pkg = loadPackageDefinition(definition) as any;
    const client = new pkg.grpc.reflection.v1.ServerReflection(service.address, credentials.createInsecure());
    const names = await new Promise<string[]>((resolve, reject) => {
      const call = client.ServerReflectionInfo(new Metadata());
      call.on('data', (response: any) => {
        resolve(response.list_services_response.service.map((s: { name: string }) => s.name));
        call.end();
      });
      call.on('error', reject);
      call.write({ list_services: '*' });
    });
    client.close();
    expect(names).toEqual(expect.arrayContaining(['iot.device.v1.TwinService', 'iot.device.v1.DeviceService']));
  });
});
