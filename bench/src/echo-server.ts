/**
 * The bare grpc-js baseline: one unary method that answers with a response
 * of fixed size (ECHO_RESPONSE_BYTES, default the size of a device lookup's
 * answer), no interceptors, no auth, no validation. Runs as its own process
 * on ECHO_PORT (default 0: any free port), like the services it is compared
 * with, and reports the port it bound as the runtime does (a JSON line,
 * `grpc listening` with `port`).
 */
import { Server, ServerCredentials, ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js';

const port = Number(process.env.ECHO_PORT ?? 0);
const response = Buffer.alloc(Number(process.env.ECHO_RESPONSE_BYTES ?? 320), 0x61);
const identity = (b: Buffer) => b;

const server = new Server();
server.addService(
  {
    Echo: {
      path: '/bench.Echo/Echo',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  {
    Echo: (_call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => callback(null, response),
  },
);
server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, bound) => {
  if (err) {
    console.error(err.message);
    process.exit(1);
  }
  console.log(JSON.stringify({ msg: 'grpc listening', port: bound }));
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
