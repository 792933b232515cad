#!/usr/bin/env node
// Keeps the dependency direction of docs/ARCHITECTURE.md: which folders may import which frameworks,
// and no import cycles between modules of src/. Prints every violation; exits 1 when there is one.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..', 'src');
const files = [];
(function walk(d) {
  for (const e of readdirSync(d)) {
    const p = join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) files.push(p);
  }
})(root);

// package → folders (or files) of src/ allowed to import it
const owners = {
  fastify: ['app.ts', 'api/', 'boot/http.ts', 'events/ws.ts'],
  '@fastify/': ['app.ts', 'api/', 'boot/http.ts', 'events/ws.ts'],
  bullmq: ['jobs/'],
  'prom-client': ['metrics/'],
  handlebars: ['render/'],
};
// folder → folders of src/ it must not import (lower layers never reach up)
const forbidden = {
  'models/': ['store/', 'params/', 'render/', 'boot/', 'jobs/', 'bmc/', 'events/', 'auth/', 'api/', 'cli/', 'content/'],
  'store/': ['params/', 'render/', 'boot/', 'jobs/', 'bmc/', 'events/', 'auth/', 'api/', 'cli/', 'content/'],
  'params/': ['render/', 'boot/', 'jobs/', 'bmc/', 'events/', 'api/', 'cli/'],
  'render/': ['boot/', 'jobs/', 'bmc/', 'events/', 'api/', 'cli/'],
  'bmc/': ['api/', 'cli/', 'jobs/', 'boot/', 'render/'],
  'auth/': ['api/', 'cli/', 'jobs/', 'boot/'],
  'cli/': ['api/', 'store/', 'jobs/', 'bmc/', 'boot/', 'events/', 'auth/'],
};

const problems = [];
const graph = new Map();
const importRe = /^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;
for (const f of files) {
  const rel = relative(root, f);
  const text = readFileSync(f, 'utf8');
  const edges = [];
  for (const m of text.matchAll(importRe)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec.startsWith('.')) {
      const target = relative(root, resolve(dirname(f), spec)).replace(/\.js$/, '.ts');
      edges.push(target);
      for (const [from, banned] of Object.entries(forbidden)) {
        if (rel.startsWith(from) && banned.some((b) => target.startsWith(b))) problems.push(`${rel} imports ${target}: ${from} must not depend on ${banned.find((b) => target.startsWith(b))}`);
      }
    } else {
      for (const [pkg, allowed] of Object.entries(owners)) {
        const hit = pkg.endsWith('/') ? spec.startsWith(pkg) : spec === pkg || spec.startsWith(`${pkg}/`);
        if (hit && !allowed.some((a) => rel === a || rel.startsWith(a))) problems.push(`${rel} imports ${spec}: only ${allowed.join(', ')} may`);
      }
    }
  }
  graph.set(rel, edges);
}

// cycles (type-only imports count too: they still couple the modules)
const state = new Map();
const stack = [];
function visit(n) {
  state.set(n, 1);
  stack.push(n);
  for (const m of graph.get(n) ?? []) {
    if (!graph.has(m)) continue;
    if (state.get(m) === 1) problems.push(`import cycle: ${[...stack.slice(stack.indexOf(m)), m].join(' → ')}`);
    else if (!state.has(m)) visit(m);
  }
  stack.pop();
  state.set(n, 2);
}
for (const n of graph.keys()) if (!state.has(n)) visit(n);

if (problems.length) {
  console.error(`lint-deps: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join('\n')}`);
  process.exit(1);
}
console.log(`lint-deps: ${files.length} modules, dependency rules hold, no cycles`);
