import { hashPassword, passwordWeakness, verifyPassword } from '../src/domain/passwords';

describe('password hashing', () => {
  test('scrypt with a per-hash salt; verifies the right password only', async () => {
    const [a, b] = await Promise.all([hashPassword('correct horse battery', 12), hashPassword('correct horse battery', 12)]);
    expect(a).toMatch(/^scrypt\$4096\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b);
    expect(a).not.toContain('correct');
    expect(await verifyPassword('correct horse battery', a)).toBe(true);
    expect(await verifyPassword('correct horse battery', b)).toBe(true);
    expect(await verifyPassword('correct horse batterx', a)).toBe(false);
    expect(await verifyPassword('', a)).toBe(false);
    expect(await verifyPassword('correct horse battery', 'bcrypt$whatever')).toBe(false);
  });

  test("the default cost is OWASP's guidance for scrypt: N=2^17, r=8, p=1", async () => {
    expect(await hashPassword('correct horse battery')).toMatch(/^scrypt\$131072\$8\$1\$/);
  });

  test('weak passwords are refused with a reason', () => {
    expect(passwordWeakness('short')).toMatch(/at least 12/);
    expect(passwordWeakness('aaaaaaaaaaaaaaaa')).toMatch(/different characters/);
    expect(passwordWeakness('Password1234')).toMatch(/common/);
    expect(passwordWeakness('alice-is-great-2026', 'alice@example.com')).toMatch(/email/);
    expect(passwordWeakness('x'.repeat(300))).toMatch(/at most/);
    expect(passwordWeakness('a perfectly fine passphrase', 'bob@example.com')).toBeUndefined();
  });
});
