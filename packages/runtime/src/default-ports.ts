/** The services' well-known gRPC ports, in one place: every default address is derived from these. */
export const DEFAULT_GRPC_PORTS = { signing: 50051, device: 50052, monitoring: 50053 } as const;

/** A service of the mesh with a default port. */
export type MeshServiceName = keyof typeof DEFAULT_GRPC_PORTS;

/** The default local address of a service: `defaultAddress('signing')` → `127.0.0.1:50051`. */
export function defaultAddress(name: MeshServiceName): string {
  return `127.0.0.1:${DEFAULT_GRPC_PORTS[name]}`;
}
