// The RenderContext of one boot file request: param layers (SPEC 4.2) read fresh from the store, Param
// defaults from the cache, a machine token issued only if a template asks, and the public URL.
import { issueMachineToken } from '../auth/machine-tokens.js';
import type { TokenSigner } from '../auth/tokens.js';
import type { StoredObject } from '../models/common.js';
import type { ParamResolver } from '../params/layers.js';
import { lookupParam, type ParamDefaults, type ParamLayer } from '../params/resolve.js';
import type { ParamLookup, RenderContext, RenderMachine } from '../render/renderer.js';
import type { ObjectSource } from '../store/object-cache.js';
import type { ObjectStore } from '../store/objects.js';

export interface RenderContextDeps {
  store: ObjectStore;
  params: ParamResolver;
  signer: TokenSigner;
}

export interface BootRenderInput {
  machine?: StoredObject;
  bootenv: StoredObject;
  prefs: Record<string, string>;
  publicUrl: string;
  mac?: string;
  /** the boot path being rendered (names the file in errors) */
  path: string;
}

export function lookupFrom(layers: readonly ParamLayer[], defaults: ParamDefaults): ParamLookup {
  return { get: (name) => lookupParam(layers, defaults, name) };
}

/** The param layers of a machine, or for no machine the `global` profile alone. */
export async function layersFor(deps: Pick<RenderContextDeps, 'store' | 'params'>, machine: StoredObject | undefined, source: ObjectSource = deps.params.source()): Promise<ParamLayer[]> {
  if (machine) return deps.params.layers({ prefix: 'machines', obj: machine }, { source });
  const global = await source.get('profiles', 'global');
  return [{ source: 'profiles/global', params: (global?.params as Record<string, unknown> | undefined) ?? {} }];
}

export function renderContextFrom(deps: Pick<RenderContextDeps, 'signer'>, input: BootRenderInput, params: ParamLookup): RenderContext {
  const { machine } = input;
  const ttl = Number(input.prefs.knownTokenTimeout ?? 3600);
  return {
    ...(machine ? { machine: machine as RenderMachine, token: () => issueMachineToken(deps.signer, machine, ttl).token } : {}),
    env: input.bootenv,
    prefs: input.prefs,
    params,
    urls: { publicUrl: input.publicUrl },
    ...(input.mac ? { mac: input.mac } : {}),
    templateName: input.path,
  };
}
