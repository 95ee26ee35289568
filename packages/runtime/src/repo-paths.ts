import fs from 'node:fs';
import path from 'node:path';

/**
 * The repository root: the nearest folder above this file whose package.json
 * declares the npm workspaces (each package has a package.json of its own).
 */
export function repoRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest) && Array.isArray(JSON.parse(fs.readFileSync(manifest, 'utf8')).workspaces)) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no workspace root above ${__dirname}`);
  }
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
