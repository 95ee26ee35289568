/**
 * `@iot-mesh/nats-auth`: the platform's NATS decentralised-JWT auth, shared by
 * the device service (tenant accounts, device credentials, revocation lists),
 * the setup script and the test helpers.
 *
 * - `nkeys.ts`: nkeys (random, from a seed, derived from a secret) and NATS JWTs signed with Node's native Ed25519.
 * - `accounts.ts`: the operator (with a signing key), the system account and the platform account.
 * - `account-limits.ts`: the limits every account JWT writes explicitly.
 * - `tenant-accounts.ts`: one account per tenant, its keys, quotas and links to the platform account.
 * - `device-users.ts`: per-device user JWTs, typed MQTT or NATS, allowed only their own subjects.
 */
export type { ClaimType, NKey, NKeyKind } from './nkeys';
export { deriveNKey, encodeNatsJwt, formatCreds, isPublicNKey, newNKey, nkeyFromSeed, peekNatsJwt, verifyNatsJwt } from './nkeys';
export type { ClaimsRequester, NatsOperatorSetup, UserPermissions } from './accounts';
export { APP_ACCOUNT_NAME, DEVICE_SYSTEM_PERMISSIONS, encodeAppAccount, encodeSystemAccount, fullAccessCreds, generateOperatorSetup, SYSTEM_ACCOUNT_NAME, updateAccountClaims } from './accounts';
export { UNLIMITED_ACCOUNT_LIMITS } from './account-limits';
export type { TenantAccountKeys, TenantAccountLimits, TenantAccountRef } from './tenant-accounts';
export { encodeTenantAccount, platformAccountLinks, tenantAccountKeys } from './tenant-accounts';
export type { DeviceConnectionKind, DevicePermissions, DeviceUserRequest, MintedDeviceUser, NatsUserAuth } from './device-users';
export { devicePermissions, deviceUserAuthenticator, mintDeviceUser, MQTT_INTERNAL_SUBSCRIBE } from './device-users';
