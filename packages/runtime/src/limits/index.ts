/** Per-caller limits every service enforces (call rate, open streams). */
export * from './env';
export * from './middleware';
export * from './stream-leases';
export * from './token-bucket';
