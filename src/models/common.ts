// The fields every object carries (SPEC 2) and defineKind(): one declaration per kind drives
// storage, indexes, routes, validation and content loading.
import { Type, type Static, type TObject, type TProperties, type TSchema } from 'typebox';

export const MetaSchema = Type.Record(Type.String(), Type.String(), { description: 'free-form string map' });

export const CommonFields = {
  meta: Type.Optional(MetaSchema),
  description: Type.Optional(Type.String({ maxLength: 4096 })),
  documentation: Type.Optional(Type.String({ maxLength: 65536 })),
  readOnly: Type.Optional(Type.Boolean({ description: 'true when the object comes from a content pack' })),
  bundle: Type.Optional(Type.String({ description: 'content pack that provides this object' })),
  validated: Type.Optional(Type.Boolean()),
  available: Type.Optional(Type.Boolean()),
  errors: Type.Optional(Type.Array(Type.String())),
  createdAt: Type.Optional(Type.String({ format: 'date-time' })),
  updatedAt: Type.Optional(Type.String({ format: 'date-time' })),
  revision: Type.Optional(Type.Integer({ minimum: 0 })),
};

/** Fields the server owns: values sent by clients are ignored, never stored. */
export const ServerFields = ['readOnly', 'bundle', 'validated', 'available', 'errors', 'createdAt', 'updatedAt', 'revision'] as const;

export interface StoredObject {
  meta?: Record<string, string>;
  description?: string;
  documentation?: string;
  readOnly?: boolean;
  bundle?: string;
  validated?: boolean;
  available?: boolean;
  errors?: string[];
  createdAt?: string;
  updatedAt?: string;
  revision?: number;
  [field: string]: unknown;
}

/** Builds a kind's object schema: its own fields plus the common ones; unknown fields are refused. */
export function objectSchema<P extends TProperties>(id: string, props: P) {
  return Type.Object({ ...CommonFields, ...props }, { title: id, additionalProperties: false });
}

export type IndexType = 'string' | 'integer' | 'boolean';

export interface IndexSpec {
  type: IndexType;
  /** unique across the kind (409 on a clash); multi-valued fields index each element */
  unique?: boolean;
  /** the field is a list; each element is indexed */
  multi?: boolean;
  /** derives the indexed value(s) from the object instead of reading the field of that name */
  from?: (obj: StoredObject) => unknown;
  /** internal index (for usedBy lookups), not offered as a list filter */
  internal?: boolean;
  /** canonical form of a value given in a filter or an `{index}:{value}` key */
  normalise?: (value: string) => string;
}

/** What a kind-specific hook may look up while validating (kept small so the memory store can serve it). */
export interface KindContext {
  exists(prefix: string, key: string): Promise<boolean>;
  get(prefix: string, key: string): Promise<StoredObject | undefined>;
  /** keys of objects of `prefix` whose indexed `field` equals `value` (bounded) */
  findKeys(prefix: string, field: string, value: string, limit: number): Promise<string[]>;
}

export interface Reference {
  prefix: string;
  key: string;
  /** JSON path of the referencing field, for error messages */
  field: string;
}

export interface KindDef<S extends TObject = TObject> {
  prefix: string;
  /** field holding the key */
  key: string;
  schema: S;
  /** fields with an index: usable in list filters, sort, and `{index}:{value}` addressing */
  indexes: Record<string, IndexSpec>;
  /** generates the key when the client sends none (machines, jobs) */
  generateKey?: () => string;
  /** fills defaults and normalises a client-supplied object (pure) */
  normalise?: (obj: StoredObject) => StoredObject;
  /** defaults that come from preferences, applied on create only (e.g. a machine's bootEnv) */
  createDefaults?: (obj: StoredObject, prefs: Readonly<Record<string, string>>) => StoredObject;
  /** kind rules beyond the schema; returns every problem found (pure) */
  check?: (obj: StoredObject) => string[];
  /** objects this one references; missing ones are a 422 */
  references?: (obj: StoredObject) => Reference[];
  /** rules that need other objects (e.g. profile cycles); returns problems */
  checkWith?: (obj: StoredObject, ctx: KindContext) => Promise<string[]>;
  /** who uses this object (delete → 409 naming them) */
  usedBy?: (key: string, ctx: KindContext) => Promise<string[]>;
  /** fields never returned to clients (e.g. a machine's secret, a user's password hash) */
  hidden?: readonly string[];
  /** writes go through kind-specific routes instead of the generic POST/PUT/PATCH/DELETE (contents) */
  customWrites?: boolean;
  /** keys may contain `/` (param names, template ids): routes take the rest of the path as the key */
  slashKeys?: boolean;
  /** params sub-resource (SPEC 3.2) */
  hasParams?: boolean;
  /** objects that always exist and cannot be deleted (e.g. profile `global`) */
  builtins?: StoredObject[];
  /** one line for the OpenAPI tag */
  description: string;
}

export function defineKind<S extends TObject>(def: KindDef<S>): KindDef<S> {
  return def;
}

export type ObjectOf<S extends TSchema> = Static<S> & StoredObject;

export const NameSchema = Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f/:]+$' });
export const ParamNameSchema = Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f:]+$' });
export const ParamsMapSchema = Type.Record(Type.String(), Type.Unknown(), { description: 'param name → value' });
