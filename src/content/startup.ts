// Loads the built-in packs (content/) and the operator's extra pack folders at start-up.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ObjectStore } from '../store/objects.js';
import { installPack } from './install.js';
import { readPackDir } from './pack.js';

/** Every folder holding a meta.yaml, directly or one level down (so a folder of packs works too). */
function packDirs(dir: string): string[] {
  if (!existsSync(dir)) return [];
  if (existsSync(join(dir, 'meta.yaml'))) return [dir];
  return readdirSync(dir).sort().map((e) => join(dir, e)).filter((p) => statSync(p).isDirectory() && existsSync(join(p, 'meta.yaml')));
}

export async function loadStartupContent(store: ObjectStore, dirs: string[], log: Logger): Promise<void> {
  for (const dir of dirs.flatMap(packDirs)) {
    const pack = readPackDir(dir);
    const content = await installPack(store, pack);
    log.info({ pack: pack.meta.name, version: pack.meta.version, objects: content.counts }, `content pack ${pack.meta.name} loaded from ${dir}`);
  }
}
