/** NATS decentralised-JWT auth of the platform: nkeys, operator/account/user claims, device credentials. */
export * from './account-claims';
export * from './nkeys';
