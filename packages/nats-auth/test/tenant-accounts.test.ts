import { deriveNKey, tenantAccountKeys } from '@iot-mesh/nats-auth';

test("a tenant's account keys are derived from the secret once and kept: the same keys again, other keys for another secret or tenant", () => {
  const first = tenantAccountKeys('secret-1', 't1');
  expect(first.account.publicKey).toBe(deriveNKey('A', 'secret-1', 'tenant-account/t1').publicKey);
  expect(first.signer.publicKey).toBe(deriveNKey('A', 'secret-1', 'tenant-signing/t1/1').publicKey);
  expect(tenantAccountKeys('secret-1', 't1')).toBe(first);
  expect(tenantAccountKeys('secret-2', 't1').account.publicKey).not.toBe(first.account.publicKey);
  expect(tenantAccountKeys('secret-1', 't2').account.publicKey).not.toBe(first.account.publicKey);
  expect(() => tenantAccountKeys('secret-1', 'a.b')).toThrow('not a valid subject token');
});
