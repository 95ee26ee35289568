import crypto from 'node:crypto';

/**
 * Encrypts signing keys at rest with AES-256-GCM under a key derived (HKDF)
 * from SIGNING_KEY_ENCRYPTION_KEY. The key id is bound as associated data,
 * so a ciphertext cannot be moved to another row.
 */
export class KeyEncryption {
  private readonly key: Buffer;

  constructor(secret: string) {
    this.key = Buffer.from(crypto.hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.from('iot-signing'), Buffer.from('signing-key-encryption'), 32));
  }

  encrypt(plaintext: Buffer, kid: string): Buffer {
    const iv = crypto.randomBytes(12);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(kid));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), ciphertext]);
  }

  decrypt(sealed: Buffer, kid: string): Buffer {
    const decipher = crypto.createDecipheriv('aes-256-gcm', this.key, sealed.subarray(0, 12));
    decipher.setAAD(Buffer.from(kid));
    decipher.setAuthTag(sealed.subarray(12, 28));
    return Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]);
  }
}
