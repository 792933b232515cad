// The one error handler: every failure leaves as the SPEC 3.3 error shape with its status code;
// 5xx bodies carry only a request id that is in the log.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, ErrorStatus, type ErrorBody, type ErrorCode } from '../errors.js';
import { isRedisDown } from '../store/redis-errors.js';

const BY_STATUS: Partial<Record<number, ErrorCode>> = {
  400: 'INVALID', 401: 'UNAUTHENTICATED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 405: 'METHOD_NOT_ALLOWED',
  409: 'CONFLICT', 412: 'STALE', 413: 'TOO_LARGE', 415: 'UNSUPPORTED_MEDIA_TYPE', 422: 'UNPROCESSABLE', 429: 'RATE_LIMITED',
};


export function toAppError(err: unknown): AppError | undefined {
  if (err instanceof AppError) return err;
  const fe = err as FastifyError & { validation?: { instancePath?: string; message?: string }[]; validationContext?: string };
  if (fe?.validation) {
    const where = fe.validationContext ?? 'body';
    const messages = fe.validation.map((v) => `${where}${v.instancePath ? v.instancePath.replace(/\//g, '.') : ''}: ${v.message ?? 'invalid'}`);
    return new AppError('INVALID', messages[0] ?? 'invalid request', { messages });
  }
  if (isRedisDown(err)) return new AppError('UNAVAILABLE', 'the store is unavailable; retry shortly');
  const status = fe?.statusCode;
  if (status && status >= 400 && status < 500) {
    const code = BY_STATUS[status] ?? 'INVALID';
    const message = fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'request body is larger than 1 MiB'
      : fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'unsupported Content-Type; send application/json (PATCH also takes application/json-patch+json and application/merge-patch+json)'
      : fe.message;
    return new AppError(code, message);
  }
  return undefined;
}

export function errorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const app = toAppError(err);
  if (app) {
    if (app.status >= 500) request.log.warn({ err }, app.message);
    const body: ErrorBody = app.toJSON();
    if (app.status >= 500) body.requestId = request.id;
    void reply.code(app.status).type('application/json').send(body);
    return;
  }
  request.log.error({ err }, 'unhandled error');
  const body: ErrorBody = { code: 'INTERNAL', message: `internal error (request id ${request.id})`, messages: [], requestId: request.id };
  void reply.code(ErrorStatus.INTERNAL).type('application/json').send(body);
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): void {
  const body: ErrorBody = { code: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}`, messages: [] };
  void reply.code(404).send(body);
}
