// A file a bootenv or task renders: its name, its (templated) path, and a Template id or inline contents.
import { Type } from 'typebox';

export const TemplateEntrySchema = Type.Object({
  name: Type.String({ minLength: 1 }),
  path: Type.Optional(Type.String()),
  id: Type.Optional(Type.String()),
  contents: Type.Optional(Type.String()),
  meta: Type.Optional(Type.Record(Type.String(), Type.String())),
}, { additionalProperties: false });

export interface TemplateEntry {
  name: string;
  path?: string;
  id?: string;
  contents?: string;
  meta?: Record<string, string>;
}

/** Problems with the entries (each needs exactly one of id or contents). */
export function checkTemplateEntries(entries: TemplateEntry[], field: string): string[] {
  return entries.flatMap((t, i) =>
    (t.id === undefined) === (t.contents === undefined) ? [`${field}/${i}: needs exactly one of "id" or "contents"`] : [],
  );
}

export function templateRefs(entries: TemplateEntry[], field: string) {
  return entries.flatMap((t, i) => (t.id ? [{ prefix: 'templates', key: t.id, field: `${field}/${i}/id` }] : []));
}
