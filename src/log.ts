// The process logger (pino): structured, one line per event, secrets redacted by path.
import { pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from './config.js';

export const REDACT_PATHS = ['req.headers.authorization', 'headers.authorization', 'password', '*.password', '*.passwordHash', '*.secret', '*.token', 'token', '*.headers', 'cfg.password'];

/** Request URLs may carry a token (`/api/v1/ws?token=…`, for browsers): logged without its value. */
export function safeUrl(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, '$1[redacted]');
}

export function createLogger(level: Config['logLevel'], destination?: DestinationStream): Logger {
  const opts = {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      req: (req: { method?: string; url?: string; ip?: string; id?: string }) => ({ method: req.method, url: req.url && safeUrl(req.url), remoteAddress: req.ip, reqId: req.id }),
    },
  };
  return destination ? pino(opts, destination) : pino(opts);
}
