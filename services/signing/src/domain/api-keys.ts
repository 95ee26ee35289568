import crypto from 'node:crypto';
import { errors, Logger, Principal, roleFromName, RoleName } from '@iot-mesh/runtime';
import type { ApiKeyRecord } from '../store/api-keys';
import type { SigningStore } from '../store/signing-store';
import { AuditTrail } from './audit';
import { byCreateTime, cursorOf, Page, pageOf } from './pages';
import { RequestOrigin } from './request-origin';
import { newApiKeySecret, secretDigest } from './secrets';

/** API keys: long-lived secrets for machine clients, with a role in one tenant, stored as hashes. */
export class ApiKeys {
  constructor(private readonly store: SigningStore, private readonly audit: AuditTrail, private readonly log: Logger) {}

  /** Makes a key in the caller's tenant; the secret is returned here only. */
  async create(actor: Principal, input: { name: string; role: RoleName; expireTime?: Date }, origin: RequestOrigin): Promise<{ apiKey: ApiKeyRecord; secret: string }> {
    const { secret, prefix } = newApiKeySecret();
    const apiKey = await this.store.apiKeys.insert({
      id: crypto.randomUUID(),
      tenantId: actor.tenantId,
      name: input.name,
      prefix,
      hash: secretDigest(secret),
      role: input.role,
      createdBy: actor.id,
      expireTime: input.expireTime ?? null,
    });
    await this.audit.record({ tenantId: actor.tenantId, type: 'api_key.created', actorId: actor.id, subject: { kind: 'api_key', id: apiKey.id }, sourceAddress: origin.address, details: { name: apiKey.name, role: apiKey.role, prefix } });
    return { apiKey, secret };
  }

  /** The caller's tenant's keys (metadata only), oldest first. */
  async list(actor: Principal, limit: number, pageToken?: string): Promise<Page<ApiKeyRecord>> {
    return pageOf(await this.store.apiKeys.list(actor.tenantId, limit + 1, cursorOf(pageToken)), limit, byCreateTime);
  }

  /** Revokes a key of the caller's tenant; revoking again changes nothing (and is not audited again). */
  async revoke(actor: Principal, id: string, origin: RequestOrigin): Promise<ApiKeyRecord> {
    const result = await this.store.apiKeys.revoke(actor.tenantId, id);
    if (!result) throw errors.notFound('api key', id);
    if (result.changed) {
      await this.audit.record({ tenantId: actor.tenantId, type: 'api_key.revoked', actorId: actor.id, subject: { kind: 'api_key', id }, sourceAddress: origin.address, details: { name: result.key.name } });
    }
    return result.key;
  }

  /** The principal of an API key secret; undefined when unknown, revoked or expired. API keys are never platform admins. */
  async principalOf(secret: string): Promise<Principal | undefined> {
    if (!secret.startsWith('iotk_') || secret.length > 200) return undefined;
    const key = await this.store.apiKeys.byHash(secretDigest(secret));
    if (!key || key.revokeTime || (key.expireTime && key.expireTime.getTime() <= Date.now())) return undefined;
    // Awaited, so a list right after a call shows its use; failing to note it never refuses the call.
    await this.store.apiKeys.touch(key.id).catch((err: Error) => this.log.debug({ err: err.message }, 'noting API key use failed'));
    return { kind: 'api_key', id: key.id, tenantId: key.tenantId, role: roleFromName(key.role)!, platformAdmin: false, name: key.name };
  }
}
