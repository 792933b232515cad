// What rarely changes, held in memory per process: Template objects (the renderer's TemplateSource),
// Param defaults and secrecy, and bootenvs (for computing paths; renders read the bootenv fresh).
// Loaded at start, then updated from the objects carried by `templates.*`, `params.*` and `bootenvs.*`
// events (index-sync.ts): a Template or default changed by another process is used from its event on
// (milliseconds later), not from the write itself.
import type { StoredObject } from '../models/common.js';
import type { ParamDefaults } from '../params/resolve.js';
import type { TemplateSource } from '../render/renderer.js';
import type { StoredEvent } from '../store/backend.js';
import type { ObjectStore } from '../store/objects.js';

const PAGE = 500;

/** Every object of a kind, a page at a time. */
export async function* pages(store: ObjectStore, prefix: string): AsyncGenerator<StoredObject[]> {
  for (let offset = 0; ; offset += PAGE) {
    const keys = await store.backend.rangeKeys(prefix, offset, PAGE, false);
    if (keys.length === 0) return;
    yield await store.getMany(prefix, keys);
    if (keys.length < PAGE) return;
  }
}

export class ContentCache implements TemplateSource {
  private readonly templates = new Map<string, { contents: string; revision: number }>();
  private readonly defaults = new Map<string, unknown>();
  private readonly secure = new Set<string>();
  readonly bootenvs = new Map<string, StoredObject>();
  /** called with a Template id whose contents changed (the renderer drops its compilation) */
  onTemplateChange: (id: string) => void = () => {};

  async load(store: ObjectStore): Promise<void> {
    this.templates.clear();
    this.defaults.clear();
    this.secure.clear();
    this.bootenvs.clear();
    for await (const page of pages(store, 'templates')) for (const t of page) this.setTemplate(t);
    for await (const page of pages(store, 'params')) for (const p of page) this.setParam(p);
    for await (const page of pages(store, 'bootenvs')) for (const b of page) this.bootenvs.set(String(b.name), b);
  }

  get(id: string): { contents: string; revision: number } | undefined {
    return this.templates.get(id);
  }

  /** Param schema defaults (the last layer of SPEC 4.2). */
  readonly paramDefaults: ParamDefaults = {
    get: (name) => (this.defaults.has(name) ? { found: true, value: this.defaults.get(name) } : { found: false }),
    names: () => this.defaults.keys(),
  };

  isSecure(name: string): boolean {
    return this.secure.has(name);
  }

  secureNames(): Iterable<string> {
    return this.secure;
  }

  /** Applies a store event of a kind this cache holds; returns true when it was one. */
  apply(e: StoredEvent): boolean {
    if (e.type !== 'templates' && e.type !== 'params' && e.type !== 'bootenvs') return false;
    let obj: StoredObject | null = null;
    try {
      obj = JSON.parse(e.object) as StoredObject | null;
    } catch {
      obj = null;
    }
    const gone = e.action === 'delete' || obj === null;
    if (e.type === 'templates') {
      if (gone) this.templates.delete(e.key);
      else this.setTemplate(obj!);
      this.onTemplateChange(e.key);
    } else if (e.type === 'params') {
      this.defaults.delete(e.key);
      this.secure.delete(e.key);
      if (!gone) this.setParam(obj!);
    } else if (gone) {
      this.bootenvs.delete(e.key);
    } else {
      this.bootenvs.set(e.key, obj!);
    }
    return true;
  }

  private setTemplate(t: StoredObject): void {
    this.templates.set(String(t.id), { contents: String(t.contents ?? ''), revision: Number(t.revision ?? 0) });
  }

  private setParam(p: StoredObject): void {
    const name = String(p.name);
    const schema = p.schema as Record<string, unknown> | undefined;
    if (schema && typeof schema === 'object' && 'default' in schema) this.defaults.set(name, schema.default);
    if (p.secure === true) this.secure.add(name);
  }
}
