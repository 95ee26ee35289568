import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoPath } from '@iot-mesh/runtime';

/**
 * scripts/buf-breaking.js in a scratch repository holding this repository's
 * buf.yaml and proto/, with commits made by the test.
 */
describe("buf breaking against main's contracts (scripts/buf-breaking.js)", () => {
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
    git('init', '-q', '-b', 'main');
    git('add', 'proto', 'buf.yaml');
    git('commit', '-qm', 'contracts');
  });

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('skips when history has no earlier contracts', () => {
    const result = run();
    expect(result.stdout).toMatch(/is the first commit: no earlier contracts; skipped/);
    expect(result.status).toBe(0);
  });

  test('on main, checks the latest contract change: passes an additive change and fails a renamed field', () => {
    const original = fs.readFileSync(deviceProto(), 'utf8');
    fs.writeFileSync(deviceProto(), `${original}\n// An additive change.\nmessage AddedForTest {\n  string note = 1;\n}\n`);
    git('commit', '-qam', 'additive');
    // A later commit that leaves the contracts alone is still checked against the state before their last change.
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not a contract\n');
    git('add', 'notes.txt');
    git('commit', '-qm', 'unrelated');
    const additive = run();
    expect(additive.stdout + additive.stderr).toMatch(/no breaking changes against the parent of .* \(the last commit touching the contracts\)/);
    expect(additive.status).toBe(0);

    const renamed = fs.readFileSync(deviceProto(), 'utf8').replace(/^(\s*)string name = (\d+);/m, '$1string renamed_name = $2;');
    expect(renamed).not.toBe(fs.readFileSync(deviceProto(), 'utf8'));
    fs.writeFileSync(deviceProto(), renamed);
    // Uncommitted: the working tree is compared with HEAD.
    const uncommitted = run();
    expect(uncommitted.status).not.toBe(0);
    expect(uncommitted.stderr).toMatch(/breaking changes against HEAD \(the working tree changes the contracts\)/);
    git('commit', '-qam', 'rename');
    const breaking = run();
    expect(breaking.status).not.toBe(0);
    expect(breaking.stderr).toMatch(/breaking changes against the parent of/);
  });

  test('on a branch, checks everything since the merge base with main', () => {
    git('checkout', '-qb', 'feature', 'main~1'); // branched off main before its rename
    fs.writeFileSync(path.join(dir, 'proto', 'iot', 'device', 'v1', 'device.proto'), fs.readFileSync(deviceProto(), 'utf8').replace(/^(\s*)string name = (\d+);/m, '$1string label = $2;'));
    git('commit', '-qam', 'breaking on the branch');
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'later\n');
    git('commit', '-qam', 'then something else');
    const result = run();
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/breaking changes against the merge base with main/);
    git('checkout', '-q', 'main');
  });

  test('fails, not skips, when the earlier contracts do not build', () => {
    fs.writeFileSync(path.join(dir, 'proto', 'iot', 'device', 'v1', 'broken.proto'), 'syntax = "proto3";\npackage iot.device.v1;\nmessage Broken { NoSuchType field = 1; }\n');
    git('add', 'proto');
    git('commit', '-qm', 'contracts that do not build');
    fs.rmSync(path.join(dir, 'proto', 'iot', 'device', 'v1', 'broken.proto'));
    git('commit', '-qam', 'fixed');
    const result = run();
    expect(result.stderr).toMatch(/the contracts of the parent of .* do not build/);
    expect(result.status).toBe(1);
    // A named ref whose contracts build is the way out.
    const named = run('HEAD~2');
    expect(named.stdout + named.stderr).toMatch(/no breaking changes against HEAD~2/);
    expect(named.status).toBe(0);
  });

  test('fails when the named ref does not exist', () => {
    const result = run('no-such-ref');
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/no commit no-such-ref/);
  });
});
