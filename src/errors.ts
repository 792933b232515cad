// Error codes, their HTTP statuses, and AppError: the one error type that crosses module boundaries.

export const ErrorStatus = {
  INVALID: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  READ_ONLY: 409,
  IN_USE: 409,
  PATCH_TEST_FAILED: 409,
  STALE: 412,
  TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNPROCESSABLE: 422,
  RENDER_FAILED: 422,
  LOCKED: 423,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ErrorStatus;

export interface ErrorDetails {
  kind?: string;
  key?: string;
  messages?: string[];
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly kind: string | undefined;
  readonly key: string | undefined;
  readonly messages: string[];

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.kind = details.kind;
    this.key = details.key;
    this.messages = details.messages ?? [message];
  }

  get status(): number {
    return ErrorStatus[this.code];
  }

  toJSON(): ErrorBody {
    const body: ErrorBody = { code: this.code, message: this.message, messages: this.messages };
    if (this.kind !== undefined) body.kind = this.kind;
    if (this.key !== undefined) body.key = this.key;
    return body;
  }
}

export interface ErrorBody {
  code: string;
  message: string;
  kind?: string;
  key?: string;
  messages: string[];
  requestId?: string;
}

/** Classifies an error by its code (works across process boundaries, where instanceof does not). */
export function errorCode(err: unknown): ErrorCode | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code in ErrorStatus ? (code as ErrorCode) : undefined;
}
