import fs from 'node:fs';
import path from 'node:path';

/**
 * The repository root, found by walking up from this file to the folder with
 * package.json, so paths work from src/ (tests, tsx) and dist/ alike.
 */
export function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) || dir.endsWith(`${path.sep}dist`) || path.basename(dir) === 'src') {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${__dirname}`);
    dir = parent;
  }
  return dir;
}

/** A path inside the repository: `repoPath('services', 'device', 'migrations')`. */
export function repoPath(...segments: string[]): string {
  return path.join(repoRoot(), ...segments);
}

/** Path of the descriptor set made by `npm run generate` (gen/iot.binpb). */
export function descriptorSetPath(): string {
  return process.env.IOT_DESCRIPTOR_SET || repoPath('gen', 'iot.binpb');
}

/** The descriptor set's bytes. */
export function readDescriptorSet(): Buffer {
  const file = descriptorSetPath();
  if (!fs.existsSync(file)) throw new Error(`${file} not found: run \`npm run generate\``);
  return fs.readFileSync(file);
}
