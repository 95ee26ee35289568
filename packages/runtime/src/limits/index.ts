/** Per-caller limits every service enforces (call rate, open streams). */
export * from './env';
export * from './middleware';
export * from './token-bucket';
