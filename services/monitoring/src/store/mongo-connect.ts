import { MongoClient } from 'mongodb';
import { MongoTelemetryStore } from './mongo-store';

/** Connects to MongoDB (database from the URL's path, default `iot`) and prepares the store's indexes. */
export async function openMongoStore(url: string): Promise<{ store: MongoTelemetryStore; close(): Promise<void> }> {
  const client = await MongoClient.connect(url, { ignoreUndefined: true });
  const name = /^mongodb(?:\+srv)?:\/\/[^/]+\/([^?]+)/.exec(url)?.[1] || 'iot';
  const store = new MongoTelemetryStore(client.db(name));
  await store.init();
  return { store, close: () => client.close() };
}
