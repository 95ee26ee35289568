import fs from 'node:fs';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DASHBOARD_SECURITY_HEADERS } from './security-headers';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * Serves the built dashboard from `root`. Unknown paths that a browser asks
 * for as a page get index.html, so client-side routes survive a reload.
 * Returns false when nothing was served.
 */
export function serveStatic(root: string, req: IncomingMessage, res: ServerResponse, urlPath: string): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return false;
  }
  const resolvedRoot = path.resolve(root);
  let file = path.resolve(resolvedRoot, `.${decoded}`);
  if (file !== resolvedRoot && !file.startsWith(resolvedRoot + path.sep)) return false;
  let stat = fs.statSync(file, { throwIfNoEntry: false });
  if (stat?.isDirectory()) {
    file = path.join(file, 'index.html');
    stat = fs.statSync(file, { throwIfNoEntry: false });
  }
  if (!stat?.isFile()) {
    if (!(req.headers.accept ?? '').includes('text/html')) return false;
    file = path.join(resolvedRoot, 'index.html');
    stat = fs.statSync(file, { throwIfNoEntry: false });
    if (!stat?.isFile()) return false;
  }
  const hashed = file.includes(`${path.sep}assets${path.sep}`);
  res.writeHead(200, {
    ...DASHBOARD_SECURITY_HEADERS,
    'content-type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream',
    'content-length': stat.size,
    // Vite puts content hashes into asset names; the page itself must always be fresh.
    'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'no-cache',
  });
  if (req.method === 'HEAD') res.end();
  else fs.createReadStream(file).pipe(res);
  return true;
}
