// The process logger (pino): structured, one line per event, secrets redacted by path.
import { pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from './config.js';

export const REDACT_PATHS = ['req.headers.authorization', 'headers.authorization', 'password', '*.password', '*.passwordHash', '*.secret', '*.token', 'token', '*.headers', 'cfg.password'];

export function createLogger(level: Config['logLevel'], destination?: DestinationStream): Logger {
  const opts = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  return destination ? pino(opts, destination) : pino(opts);
}
