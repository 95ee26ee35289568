import { Metadata, status } from '@grpc/grpc-js';
import { Any } from '../../../gen/ts/google/protobuf/any';
import { Status } from '../../../gen/ts/google/rpc/status';
import { rpcStatusDetails, ServiceError } from '../src';

describe('rpcStatusDetails: a failed call\'s google.rpc details, client side', () => {
  test('reads back what a ServiceError sends: field violations, retry delay, reason', () => {
    const sent = new ServiceError(status.RESOURCE_EXHAUSTED, 'slow down', {
      fieldViolations: [{ field: 'email', description: 'is required' }, { field: 'device.labels', description: 'too many' }],
      retryAfterMs: 1250,
      reason: 'LOGIN_THROTTLED',
    }).toGrpc();
    expect(rpcStatusDetails(sent.metadata)).toEqual({
      fieldViolations: [{ field: 'email', description: 'is required' }, { field: 'device.labels', description: 'too many' }],
      retryAfterMs: 1250,
      reason: 'LOGIN_THROTTLED',
    });
  });

  test('no trailer: no violations and no delay; details of other types are skipped', () => {
    expect(rpcStatusDetails(undefined)).toEqual({ fieldViolations: [] });
    expect(rpcStatusDetails(new Metadata())).toEqual({ fieldViolations: [] });
    const other: Any = { typeUrl: 'type.googleapis.com/google.rpc.DebugInfo', value: Buffer.from([0x0a, 0x01, 0x78]) };
    const metadata = new Metadata();
    metadata.set('grpc-status-details-bin', Buffer.from(Status.encode({ code: status.INTERNAL, message: 'x', details: [other] }).finish()));
    expect(rpcStatusDetails(metadata)).toEqual({ fieldViolations: [] });
  });
});
