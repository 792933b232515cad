// What the HTTP layer needs from the rest of the server, built once in main.ts and passed down.
import type { Logger } from 'pino';
import type { AuthGuard } from '../auth/guard.js';
import type { RateLimiters } from '../auth/rate-limit.js';
import type { SecretBox } from '../auth/secrets.js';
import type { TokenSigner } from '../auth/tokens.js';
import type { Config } from '../config.js';
import type { ParamResolver } from '../params/layers.js';
import type { ObjectStore } from '../store/objects.js';
import type { PrefsService } from '../store/prefs.js';

export interface AppDeps {
  config: Config;
  store: ObjectStore;
  params: ParamResolver;
  prefs: PrefsService;
  guard: AuthGuard;
  signer: TokenSigner;
  secrets: SecretBox;
  limits: RateLimiters;
  log: Logger;
}
