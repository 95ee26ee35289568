/** The shared runtime every service is built on. */
export * from './client';
export * from './config';
export * from './errors';
export * from './health';
export * from './logger';
export * from './nats';
export * from './observability';
export * from './postgres';
export * from './repo-paths';
export * from './redis';
export * from './rpc';
export * from './server';
export * from './service';
export * from './subjects';
export * from './validation';
export * from './auth';
