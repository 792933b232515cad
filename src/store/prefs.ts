// Reads and writes preferences: defaults under stored values, every name and value checked.
import { AppError } from '../errors.js';
import { prefDefaults, Prefs } from '../models/prefs.js';
import type { Backend } from './backend.js';

/** How long a process trusts the preferences it read: a change takes effect everywhere within this. */
export const PREFS_CACHE_MS = 1000;

export class PrefsService {
  private cache: { at: number; value: Promise<Record<string, string>> } | undefined;

  constructor(
    private readonly backend: Backend,
    private readonly exists: (prefix: string, key: string) => Promise<boolean>,
    private readonly now = () => Date.now(),
  ) {}

  /** Read on every boot request and machine create: cached for a second (refreshed at once by set()). */
  async all(): Promise<Record<string, string>> {
    return { ...(await this.current()) };
  }

  /** The cached map itself (callers only read it). */
  private current(): Promise<Readonly<Record<string, string>>> {
    const t = this.now();
    if (!this.cache || t - this.cache.at >= PREFS_CACHE_MS) {
      const value = this.backend.prefs().then((stored) => ({ ...prefDefaults(), ...stored }));
      this.cache = { at: t, value };
      value.catch(() => (this.cache = undefined)); // never cache a failed read
    }
    return this.cache.value;
  }

  async get(name: string): Promise<string> {
    return (await this.current())[name] ?? '';
  }

  /** Validates every value (unknown name → 400, bad value → 400, missing object → 422) and stores them together. */
  async set(values: Record<string, unknown>): Promise<Record<string, string>> {
    const invalid: string[] = [];
    const missing: string[] = [];
    const clean: Record<string, string> = {};
    for (const [name, raw] of Object.entries(values)) {
      const def = Prefs[name];
      if (!def || !Object.prototype.hasOwnProperty.call(Prefs, name)) {
        invalid.push(`${name}: unknown preference (known: ${Object.keys(Prefs).join(', ')})`);
        continue;
      }
      const value = typeof raw === 'string' ? raw : typeof raw === 'number' || typeof raw === 'boolean' ? String(raw) : undefined;
      if (value === undefined) {
        invalid.push(`${name}: must be a string`);
        continue;
      }
      const problem = def.check?.(value);
      if (problem) invalid.push(`${name}: ${problem}`);
      else if (def.ref && !(value === '' && def.ref.emptyOk) && !(await this.exists(def.ref.prefix, value))) missing.push(`${name}: ${def.ref.prefix}/${value} does not exist`);
      else clean[name] = value;
    }
    if (invalid.length > 0) throw new AppError('INVALID', invalid[0]!, { messages: invalid });
    if (missing.length > 0) throw new AppError('UNPROCESSABLE', missing[0]!, { messages: missing });
    await this.backend.setPrefs(clean);
    this.cache = undefined;
    return this.all();
  }
}
