/**
 * The client side of the runtime alone (`@iot-mesh/runtime/client`): gRPC
 * client helpers, the services' default addresses, the firmware upload's
 * chunk size, Duration/Timestamp conversion and the decoding of a failed
 * call's `google.rpc` details, without the server, database and tracing
 * modules the main entry loads.
 * Command-line tools import this so they start in a fraction of the time.
 */
export * from './client';
export * from './default-ports';
export * from './firmware-chunks';
export * from './rpc-status';
export * from './time';
