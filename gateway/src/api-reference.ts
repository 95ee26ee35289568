import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { buildOpenApi } from './openapi';
import { RouteTable } from './route-table';
import { serveStatic } from './static-files';

/** Where the document and the reference page are served. */
export const OPENAPI_PATH = '/openapi.json';
export const DOCS_PATH = '/docs/';

/** The Swagger UI bundle, served from node_modules: the machines running the gateway may have no internet. */
const SWAGGER_UI_DIR = path.dirname(require.resolve('swagger-ui-dist/package.json'));

/** Relative URLs throughout, so the page works behind any path prefix. */
const DOCS_HTML = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>iot-mesh REST API</title>
    <link rel="stylesheet" href="./swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./swagger-ui-bundle.js"></script>
    <script>
      window.ui = SwaggerUIBundle({ url: '..${OPENAPI_PATH}', dom_id: '#swagger-ui', deepLinking: true, persistAuthorization: true, tryItOutEnabled: true });
    </script>
  </body>
</html>
`;

/**
 * Serves `/openapi.json` (built once from the route table) and the Swagger UI
 * reference page under `/docs/`. Returns false for every other path.
 */
export function apiReferenceHandler(table: RouteTable): (req: IncomingMessage, res: ServerResponse, urlPath: string) => boolean {
  const document = JSON.stringify(buildOpenApi(table));
  return (req, res, urlPath) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    if (urlPath === OPENAPI_PATH) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(document), 'cache-control': 'no-cache' });
      res.end(req.method === 'HEAD' ? undefined : document);
      return true;
    }
    if (urlPath === '/docs') {
      res.writeHead(308, { location: 'docs/' }).end();
      return true;
    }
    if (urlPath === DOCS_PATH || urlPath === `${DOCS_PATH}index.html`) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(DOCS_HTML), 'cache-control': 'no-cache' });
      res.end(req.method === 'HEAD' ? undefined : DOCS_HTML);
      return true;
    }
    if (urlPath.startsWith(DOCS_PATH) && /\.(js|css|png|map)$/.test(urlPath)) {
      return serveStatic(SWAGGER_UI_DIR, req, res, urlPath.slice(DOCS_PATH.length - 1));
    }
    return false;
  };
}
