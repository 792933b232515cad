// Prints results: JSON by default, a plain text table with `-o table`.

const COLUMNS = ['uuid', 'name', 'id', 'address', 'role', 'bootEnv', 'stage', 'workflow', 'state', 'task', 'machine', 'runnable', 'version', 'available'];

function cell(v: unknown): string {
  if (v === undefined || v === null) return '';
  return typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
}

export function table(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return '';
  const cols = COLUMNS.filter((c) => rows.some((r) => r[c] !== undefined && r[c] !== ''));
  const use = cols.length > 0 ? cols : Object.keys(rows[0]!).slice(0, 6);
  const cells = [use.map((c) => c.toUpperCase()), ...rows.map((r) => use.map((c) => cell(r[c])))];
  const widths = use.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return cells.map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

export function render(data: unknown, format: string | undefined): string {
  if (format === 'table') {
    if (Array.isArray(data)) return table(data as Record<string, unknown>[]);
    if (data && typeof data === 'object') {
      return Object.entries(data as Record<string, unknown>).map(([k, v]) => `${k}\t${cell(v)}`).join('\n');
    }
    return cell(data);
  }
  if (format !== undefined && format !== 'json') throw new Error(`unknown output format "${format}" (json or table)`);
  return JSON.stringify(data, null, 2);
}
