import crypto from 'node:crypto';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

/** A mail the in-test SMTP server took: the envelope's recipients and the raw message. */
export interface ReceivedMail {
  to: string[];
  body: string;
}

/** A real SMTP server in-process on a free port (nodemailer talks SMTP to it); every mail lands in `mails`. */
export async function startSmtpServer(): Promise<{ server: SMTPServer; port: number; mails: ReceivedMail[]; close(): Promise<void> }> {
  const mails: ReceivedMail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address), body: Buffer.concat(chunks).toString('utf8') });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.server.address() as AddressInfo).port, mails, close: () => new Promise<void>((resolve) => server.close(resolve)) };
}

/** Standard Webhooks verification, written from the published spec (not the service's code). */
export function verifySignature(secret: string, headers: http.IncomingHttpHeaders, body: string): boolean {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = crypto.createHmac('sha256', key).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`).digest();
  return String(headers['webhook-signature'])
    .split(' ')
    .some((sig) => sig.startsWith('v1,') && crypto.timingSafeEqual(Buffer.from(sig.slice(3), 'base64'), expected));
}
