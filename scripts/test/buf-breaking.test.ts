import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoPath } from '@iot-mesh/runtime';

/**
 * scripts/buf-breaking.js in a scratch repository holding this repository's
 * buf.yaml and proto/, with commits made by the test.
 */
describe('buf breaking against an earlier commit (scripts/buf-breaking.js)', () => {
  let dir: string;
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.email=test@example.com', '-c', 'user.name=test', ...args], { cwd: dir, stdio: 'pipe' });
  const run = (...args: string[]) => spawnSync(process.execPath, [path.join(dir, 'scripts', 'buf-breaking.js'), ...args], { cwd: dir, encoding: 'utf8' });
  const deviceProto = () => path.join(dir, 'proto', 'iot', 'device', 'v1', 'device.proto');

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-buf-breaking-'));
    fs.cpSync(repoPath('proto'), path.join(dir, 'proto'), { recursive: true });
    fs.cpSync(repoPath('buf.yaml'), path.join(dir, 'buf.yaml'));
    fs.mkdirSync(path.join(dir, 'scripts'));
    fs.cpSync(repoPath('scripts', 'buf-breaking.js'), path.join(dir, 'scripts', 'buf-breaking.js'));
    fs.cpSync(repoPath('gen', 'proto-deps'), path.join(dir, 'gen', 'proto-deps'), { recursive: true });
    fs.symlinkSync(repoPath('node_modules'), path.join(dir, 'node_modules'));
    git('init', '-q');
    git('add', 'proto', 'buf.yaml');
    git('commit', '-qm', 'contracts');
  });

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('skips when there is no earlier commit', () => {
    const result = run();
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/no commit HEAD~1.*skipped/);
  });

  test('passes an additive change and fails a renamed field', () => {
    const original = fs.readFileSync(deviceProto(), 'utf8');
    fs.writeFileSync(deviceProto(), `${original}\n// An additive change.\nmessage AddedForTest {\n  string note = 1;\n}\n`);
    git('commit', '-qam', 'additive');
    const additive = run();
    expect(additive.stdout + additive.stderr).toMatch(/no breaking changes against HEAD~1/);
    expect(additive.status).toBe(0);

    const renamed = fs.readFileSync(deviceProto(), 'utf8').replace(/^(\s*)string name = (\d+);/m, '$1string renamed_name = $2;');
    expect(renamed).not.toBe(fs.readFileSync(deviceProto(), 'utf8'));
    fs.writeFileSync(deviceProto(), renamed);
    git('commit', '-qam', 'rename');
    const breaking = run();
    expect(breaking.status).not.toBe(0);
    expect(breaking.stderr).toMatch(/breaking changes against HEAD~1/);
  });
});
