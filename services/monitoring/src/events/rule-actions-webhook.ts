import crypto from 'node:crypto';
import { context, Context } from '@opentelemetry/api';
import { injectTraceHeaders } from '@iot-mesh/runtime';

/**
 * The Standard Webhooks signature (https://www.standardwebhooks.com):
 * `v1,` + base64 HMAC-SHA256, keyed with the base64 part of the `whsec_`
 * secret, over `<webhook-id>.<webhook-timestamp>.<body>`.
 */
export function webhookSignature(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return `v1,${crypto.createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

/** One signed POST to send. */
export interface WebhookCall {
  url: string;
  secret: string;
  /** `webhook-id`: the same on every attempt of one delivery, so receivers can drop repeats. */
  id: string;
  /** The JSON body (Standard Webhooks payload: type, timestamp, data). */
  body: string;
  timeoutMs: number;
}

/**
 * POSTs a signed webhook; resolves on a 2xx answer, throws with the reason
 * otherwise (refused connection, timeout, status). The trace context `ctx`
 * goes along as `traceparent`, so the receiver's spans join the device's trace.
 */
export async function postWebhook(call: WebhookCall, ctx: Context = context.active()): Promise<void> {
  const timestamp = Math.floor(Date.now() / 1000);
  const headers = injectTraceHeaders(
    new Headers({
      'content-type': 'application/json',
      'webhook-id': call.id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': webhookSignature(call.secret, call.id, timestamp, call.body),
    }),
    ctx,
  );
  let response: Response;
  try {
    response = await fetch(call.url, { method: 'POST', headers, body: call.body, signal: AbortSignal.timeout(call.timeoutMs), redirect: 'manual' });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    throw new Error(e.name === 'TimeoutError' ? `no answer within ${call.timeoutMs} ms` : `request failed: ${e.cause?.code ?? e.cause?.message ?? e.message}`);
  }
  // Drain the body so the connection can be reused.
  await response.arrayBuffer().catch(() => undefined);
  if (response.status < 200 || response.status >= 300) throw new Error(`answered HTTP ${response.status}`);
}
