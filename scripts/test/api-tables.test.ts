import fs from 'node:fs';
import { accessRuleOf, descriptorAccessRules } from '@iot-mesh/runtime';
import { buildRouteTable } from '../../gateway/src/route-table';
import { API_TABLES_END, API_TABLES_START, README_PATH, renderApiTables, replaceApiTables, summary } from '../api-tables';

const readme = fs.readFileSync(README_PATH, 'utf8');
const table = buildRouteTable();
const rendered = renderApiTables(table);

describe('the README API tables', () => {
  test('are up to date with the descriptor set (run `npm run docs:api` when this fails)', () => {
    expect(replaceApiTables(readme, rendered)).toBe(readme);
  });

  test('have one row per RPC with its REST route, the access rule the services enforce, and its kind', () => {
    // gRPC path → the cells of its row, read back from the rendered markdown.
    const rows = new Map<string, string[]>();
    let service = '';
    for (const line of rendered.split('\n')) {
      const heading = /^\*\*`([\w.]+)`\*\*/.exec(line);
      if (heading) service = heading[1];
      const row = /^\| `(\w+)` \| (.*) \|$/.exec(line);
      if (row) rows.set(`/${service}/${row[1]}`, row[2].split(' | '));
    }
    expect(rows.size).toBe(table.methods.length);
    const rules = descriptorAccessRules();
    for (const m of table.methods) {
      expect({ rpc: m.grpcPath, found: rows.has(m.grpcPath) }).toEqual({ rpc: m.grpcPath, found: true });
      const [rest, access, kind] = rows.get(m.grpcPath)!;
      expect({ rpc: m.grpcPath, access: access.replace(' ', '_') }).toEqual({ rpc: m.grpcPath, access: accessRuleOf(m.grpcPath, rules) });
      expect(kind).toBe(m.kind === 'server_streaming' ? 'server stream' : 'unary');
      if (m.http.length === 0) expect(rest).toBe('gRPC / gRPC-Web only');
      for (const b of m.http) expect(rest).toContain(`\`${b.verb} ${b.template.source}\``);
    }
    expect(rendered).toContain('| `Login` | `POST /v1/auth:login` | public | unary | Login exchanges a password for an access token and a refresh token. |');
  });

  test('rewrite only the marked region, and refuse a README without the markers', () => {
    const doc = `# Title\n\nbefore\n${API_TABLES_START}\nold table\n${API_TABLES_END}\nafter\n`;
    expect(replaceApiTables(doc, 'new')).toBe(`# Title\n\nbefore\n${API_TABLES_START}\nnew\n${API_TABLES_END}\nafter\n`);
    expect(replaceApiTables(replaceApiTables(doc, 'new'), 'new')).toBe(replaceApiTables(doc, 'new'));
    expect(() => replaceApiTables('# no markers\n', 'x')).toThrow(/api-tables:start/);
    expect(() => replaceApiTables(`${API_TABLES_END}\n${API_TABLES_START}\n`, 'x')).toThrow();
  });

  test('summarise a wrapped comment by its first sentence on one line', () => {
    expect(summary(' Refresh exchanges a refresh token for a new pair; the presented refresh\n token is spent. Presenting a spent one revokes its whole family.\n')).toBe(
      'Refresh exchanges a refresh token for a new pair; the presented refresh token is spent.',
    );
    expect(summary(' No full stop here\n\n Second paragraph.')).toBe('No full stop here');
    expect(summary('')).toBe('');
  });
});
