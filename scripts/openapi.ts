/**
 * Writes the REST API's OpenAPI 3.1 document (`npm run openapi [-- <file>]`),
 * generated from the descriptor set and its `google.api.http` annotations; the
 * gateway serves the same document at `/openapi.json`. Without a file it goes
 * to stdout.
 */
import fs from 'node:fs';
import { buildOpenApi } from '../gateway/src/openapi';
import { buildRouteTable } from '../gateway/src/route-table';

const text = `${JSON.stringify(buildOpenApi(buildRouteTable()), null, 2)}\n`;
const out = process.argv[2];
if (out) fs.writeFileSync(out, text);
else process.stdout.write(text);
