/**
 * `@iot-mesh/nats-auth`: the platform's NATS decentralised-JWT auth, shared by
 * the device service (minting device credentials, re-issuing the account JWT
 * with revocations), the setup script and the test helpers.
 *
 * - `nkeys.ts`: nkeys and NATS JWTs signed with Node's native Ed25519.
 * - `accounts.ts`: the operator, the system account and the application account.
 * - `device-users.ts`: per-device user JWTs allowed only their own subjects.
 */
export type { ClaimType, NKey, NKeyKind } from './nkeys';
export { encodeNatsJwt, formatCreds, newNKey, nkeyFromSeed, peekNatsJwt } from './nkeys';
export type { NatsOperatorSetup } from './accounts';
export { APP_ACCOUNT_NAME, encodeAppAccount, encodeSystemAccount, fullAccessCreds, generateOperatorSetup, SYSTEM_ACCOUNT_NAME, UNLIMITED_ACCOUNT_LIMITS } from './accounts';
export type { DevicePermissions, MintedDeviceUser } from './device-users';
export { devicePermissions, mintDeviceUser, MQTT_INTERNAL_SUBSCRIBE } from './device-users';
