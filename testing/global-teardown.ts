import { stopTestServers } from './global-setup';

/** jest globalTeardown: stops the private servers testing/global-setup.ts started (if any). */
export default async function globalTeardown(): Promise<void> {
  await stopTestServers();
}
