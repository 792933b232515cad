// Content packs as data: reading a pack folder (meta.yaml + one file per object) or a bundle
// (one JSON/YAML document), and writing a bundle back to a folder.
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import YAML from 'yaml';
import { AppError } from '../errors.js';
import type { StoredObject } from '../models/common.js';
import { ContentKinds } from '../models/registry.js';

export interface PackObject {
  prefix: string;
  object: StoredObject;
  /** where it came from, for error messages (a file path or `bundle:/bootenvs/3`) */
  origin: string;
}

export interface Pack {
  meta: { name: string; version?: string; description?: string; documentation?: string; prerequisites?: string[] };
  objects: PackObject[];
  source: string;
}

const OBJECT_FILE = /\.(ya?ml|json)$/i;

function walk(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.sort().flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

function parseFile(path: string): unknown {
  const text = readFileSync(path, 'utf8');
  try {
    return path.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new AppError('INVALID', `${path}: not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
}

/**
 * Reads a pack folder. In `templates/` (and in the folder meta.yaml names as `templatesDir`), YAML/JSON
 * files are Template objects and any other file is a raw template whose id is its relative path.
 */
export function readPackDir(dir: string): Pack {
  const metaPath = join(dir, 'meta.yaml');
  const meta = parseFile(metaPath) as Pack['meta'] & { templatesDir?: string };
  if (!meta || typeof meta.name !== 'string') throw new AppError('INVALID', `${metaPath}: needs a "name"`);
  const objects: PackObject[] = [];
  for (const prefix of ContentKinds) {
    for (const file of walk(join(dir, prefix))) {
      if (OBJECT_FILE.test(file)) objects.push({ prefix, object: parseFile(file) as StoredObject, origin: file });
      else if (prefix === 'templates') objects.push(rawTemplate(join(dir, prefix), file));
    }
  }
  if (meta.templatesDir) {
    const tdir = resolve(dir, meta.templatesDir);
    for (const file of walk(tdir)) if (!file.endsWith('README.md')) objects.push(rawTemplate(tdir, file));
  }
  const { templatesDir: _ignored, ...rest } = meta;
  return { meta: rest, objects, source: dir };
}

function rawTemplate(root: string, file: string): PackObject {
  return { prefix: 'templates', object: { id: relative(root, file).split('\\').join('/'), contents: readFileSync(file, 'utf8') }, origin: file };
}

/** A bundle: `{meta: {...}, params: [...], bootenvs: [...], ...}` (JSON or YAML). */
export function packFromBundle(doc: unknown, source = 'bundle'): Pack {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new AppError('INVALID', 'a content bundle must be an object with "meta" and one list per kind');
  const d = doc as Record<string, unknown>;
  const meta = d.meta as Pack['meta'] | undefined;
  if (!meta || typeof meta.name !== 'string') throw new AppError('INVALID', 'bundle: meta.name is required');
  const unknown = Object.keys(d).filter((k) => k !== 'meta' && !(ContentKinds as readonly string[]).includes(k));
  if (unknown.length > 0) throw new AppError('INVALID', `bundle: unknown sections ${unknown.join(', ')} (allowed: meta, ${ContentKinds.join(', ')})`);
  const objects: PackObject[] = [];
  for (const prefix of ContentKinds) {
    const list = d[prefix];
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw new AppError('INVALID', `bundle: ${prefix} must be a list`);
    list.forEach((o, i) => objects.push({ prefix, object: o as StoredObject, origin: `${source}:/${prefix}/${i}` }));
  }
  return { meta, objects, source };
}

export function packToBundle(pack: Pack): Record<string, unknown> {
  const out: Record<string, unknown> = { meta: pack.meta };
  for (const prefix of ContentKinds) {
    const objs = pack.objects.filter((o) => o.prefix === prefix).map((o) => o.object);
    if (objs.length > 0) out[prefix] = objs;
  }
  return out;
}

/** Writes a bundle as a pack folder (one YAML file per object). */
export function writePackDir(pack: Pack, dir: string): string[] {
  const written: string[] = [];
  const put = (path: string, data: unknown) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, YAML.stringify(data));
    written.push(path);
  };
  put(join(dir, 'meta.yaml'), pack.meta);
  for (const o of pack.objects) {
    const key = String(o.object.name ?? o.object.id ?? 'object');
    put(join(dir, o.prefix, `${key.replace(/[^A-Za-z0-9._-]+/g, '-')}.yaml`), o.object);
  }
  return written;
}
