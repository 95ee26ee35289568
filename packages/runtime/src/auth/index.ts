/** Authentication and authorization shared by every service. */
export * from './access-rules';
export * from './api-keys';
export * from './caller';
export * from './jwt';
export * from './key-source';
export * from './middleware';
export * from './principal';
export * from './signing-client';
