import { Logger, Redis } from '@iot-mesh/runtime';
import { DeviceRecord } from '../domain/model';

/**
 * Sets a cached value only if it is newer than what is there: a key holds
 * `<version>|<json>`, or `<version>|` as a tombstone left by a change (so a
 * reader that fetched the old row before the change cannot put it back).
 */
const PUT_IF_NEWER = `
local cur = redis.call('GET', KEYS[1])
local v = tonumber(ARGV[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local cv = tonumber(string.sub(cur, 1, sep - 1))
  local body = string.sub(cur, sep + 1)
  if cv > v or (cv == v and (body ~= '' or ARGV[2] == '')) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1`;

const DATE_FIELDS = ['credentialIssueTime', 'credentialExpireTime', 'lastSeenTime', 'lastConnectTime', 'lastDisconnectTime', 'lastDataTime', 'createTime', 'updateTime'] as const;

/**
 * Read-through cache of device lookups in Redis. Every Redis failure is a
 * miss (reads go to PostgreSQL); entries expire after `ttlMs` so a change
 * made while Redis was unreachable cannot stay hidden for long.
 */
export class DeviceCache {
  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
    private readonly ttlMs = 60_000,
  ) {}

  private key(tenantId: string, id: string): string {
    return `iot:device:${tenantId}:${id}`;
  }

  /** The cached device, or undefined on a miss, a tombstone or an unreachable Redis. */
  async get(tenantId: string, id: string): Promise<DeviceRecord | undefined> {
    let raw: string | null;
    try {
      raw = await this.redis.get(this.key(tenantId, id));
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'device cache read failed');
      return undefined;
    }
    if (!raw) return undefined;
    const body = raw.slice(raw.indexOf('|') + 1);
    if (!body) return undefined;
    const parsed = JSON.parse(body) as Record<string, unknown>;
    for (const field of DATE_FIELDS) if (typeof parsed[field] === 'string') parsed[field] = new Date(parsed[field] as string);
    return parsed as unknown as DeviceRecord;
  }

  /** Caches `device` unless a newer version (or a tombstone of a newer change) is there. */
  async put(device: DeviceRecord): Promise<void> {
    await this.write(this.key(device.tenantId, device.id), device.version, JSON.stringify(device));
  }

  /** Replaces whatever is cached by a tombstone of `version` (the version the change produced). */
  async invalidate(tenantId: string, id: string, version: number): Promise<void> {
    await this.write(this.key(tenantId, id), version, '');
  }

  private async write(key: string, version: number, body: string): Promise<void> {
    try {
      await this.redis.eval(PUT_IF_NEWER, 1, key, String(version), body, String(this.ttlMs));
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'device cache write failed');
    }
  }
}
