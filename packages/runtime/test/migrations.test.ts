import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger, createPool, migrate, Pool } from '../src';
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';

const log = createLogger('migrations-test', 'silent');

describe('migrate', () => {
  let db: TestDatabase;
  let pool: Pool;
  let dir: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, 'mig', log);
  });
  afterAll(async () => {
    await pool.end();
    await db.drop();
  });
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-migrations-'));
  });

  const write = (file: string, sql: string) => fs.writeFileSync(path.join(dir, file), sql);

  it('applies new migrations in version order, once', async () => {
    write('0002_add_column.sql', 'ALTER TABLE widgets ADD COLUMN colour text;');
    write('0001_create_widgets.sql', 'CREATE TABLE widgets (id int PRIMARY KEY);');
    expect(await migrate(pool, 'mig', dir, log)).toEqual([1, 2]);
    expect(await migrate(pool, 'mig', dir, log)).toEqual([]);
    await pool.query("INSERT INTO widgets (id, colour) VALUES (1, 'red')");
    const { rows } = await pool.query('SELECT version, name FROM mig.schema_migrations ORDER BY version');
    expect(rows).toEqual([
      { version: 1, name: 'create_widgets' },
      { version: 2, name: 'add_column' },
    ]);
    write('0003_more.sql', 'CREATE TABLE gadgets (id int);');
    expect(await migrate(pool, 'mig', dir, log)).toEqual([3]);
  });

  it('refuses to run when an applied migration was edited', async () => {
    write('0001_create_widgets.sql', 'CREATE TABLE widgets (id bigint PRIMARY KEY);');
    await expect(migrate(pool, 'mig', dir, log)).rejects.toThrow(/was edited after it was applied/);
  });

  it('rolls back a failing migration entirely and reports it', async () => {
    const other = createPool(db.url, 'mig2', log);
    try {
      write('0001_ok.sql', 'CREATE TABLE a (id int);');
      write('0002_broken.sql', 'CREATE TABLE b (id int); SELECT * FROM no_such_table;');
      await expect(migrate(other, 'mig2', dir, log)).rejects.toThrow(/0002_broken.sql failed/);
      const { rows } = await other.query("SELECT to_regclass('mig2.b') AS b, to_regclass('mig2.a') AS a");
      expect(rows[0]).toEqual({ a: 'a', b: null });
    } finally {
      await other.end();
    }
  });

  it('lets concurrent replicas migrate the same schema safely', async () => {
    const pools = [createPool(db.url, 'mig3', log), createPool(db.url, 'mig3', log), createPool(db.url, 'mig3', log)];
    try {
      write('0001_t.sql', 'CREATE TABLE t (id int);');
      write('0002_u.sql', 'CREATE TABLE u (id int);');
      const results = await Promise.all(pools.map((p) => migrate(p, 'mig3', dir, log)));
      expect(results.flat().sort()).toEqual([1, 2]);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('rejects badly named files', async () => {
    write('create.sql', 'SELECT 1;');
    await expect(migrate(pool, 'mig', dir, log)).rejects.toThrow(/must be named NNNN_name.sql/);
  });
});
