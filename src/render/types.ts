// The renderer's contract with its callers: where templates and params come from, what a render sees.

/** Template objects by id (the store, a content pack, or a test fixture). */
export interface TemplateSource {
  get(id: string): { contents: string; revision: number } | undefined;
}

/** The one param resolver (SPEC 4.2) plugged in by the caller; the renderer never resolves params itself. */
export interface ParamLookup {
  get(name: string): { found: true; value: unknown } | { found: false };
}

export interface RenderMachine extends Record<string, unknown> {
  uuid: string;
  name: string;
  address?: string;
  hardwareAddrs: string[];
  arch: string;
}

export interface RenderContext {
  machine?: RenderMachine;
  /** the bootenv object (bootParams, kernel, initrds, os, templates…) */
  env?: Record<string, unknown>;
  task?: Record<string, unknown>;
  stage?: Record<string, unknown>;
  job?: Record<string, unknown>;
  prefs: Record<string, string>;
  params: ParamLookup;
  /** e.g. http://10.0.0.1:8080; every URL helper derives from it */
  urls: { publicUrl: string };
  /** machine token issuer (SPEC 10); the `token` helper fails when absent */
  token?: () => string;
  /** the hardware address this file is rendered for (templates whose path uses `mac` render once per MAC) */
  mac?: string;
  /** names the file being rendered in error messages (e.g. its boot path) */
  templateName: string;
}

export interface Renderer {
  /** renders the Template object `id` */
  render(id: string, ctx: RenderContext): string;
  /** renders inline source (a template entry's `contents` or `path`); compilations cached by source */
  renderString(source: string, ctx: RenderContext, name: string): string;
  /** drops the cached compilation of one Template (or of all) after Template objects change */
  invalidate(id?: string): void;
}

export interface RendererOptions {
  /** largest output of one render, nested templates included (default 4 MiB) */
  maxOutputBytes?: number;
  /** deepest nesting of partials, includes and bootParams (default 16) */
  maxDepth?: number;
  /** compiled inline sources kept (default 2000) */
  stringCacheSize?: number;
  /** `each` iterations allowed in one render, nested loops included (default 100,000) */
  maxIterations?: number;
  /** time one render may take, checked at every loop, partial and helper call (default 2000 ms) */
  maxRenderMs?: number;
}
