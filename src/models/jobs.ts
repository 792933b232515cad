// The jobs kind: one run of one task-list entry on one machine (SPEC 5.4); the log lives beside it.
import { randomUUID } from 'node:crypto';
import { Type } from 'typebox';
import { defineKind, objectSchema } from './common.js';

export const JobStates = ['created', 'running', 'finished', 'failed', 'incomplete'] as const;
export const ExitStates = ['complete', 'failed', 'reboot', 'poweroff', 'stop'] as const;

const literalUnion = (values: readonly string[]) => Type.Union(values.map((v) => Type.Literal(v)));

export const JobSchema = objectSchema('Job', {
  uuid: Type.Optional(Type.String({ format: 'uuid' })),
  machine: Type.String({ format: 'uuid' }),
  task: Type.Optional(Type.String()),
  stage: Type.Optional(Type.String()),
  workflow: Type.Optional(Type.String()),
  bootEnv: Type.Optional(Type.String()),
  context: Type.Optional(Type.String()),
  state: Type.Optional(literalUnion(JobStates)),
  exitState: Type.Optional(literalUnion(['', ...ExitStates])),
  startTime: Type.Optional(Type.String()),
  endTime: Type.Optional(Type.String()),
  previous: Type.Optional(Type.String()),
  currentIndex: Type.Optional(Type.Integer({ minimum: -1 })),
  resultErrors: Type.Optional(Type.Array(Type.String())),
});

export const jobs = defineKind({
  prefix: 'jobs',
  key: 'uuid',
  schema: JobSchema,
  description: 'Runs of tasks on machines',
  generateKey: () => randomUUID(),
  customWrites: true, // POST is the agent's claim, PATCH moves state: api/jobs.ts
  indexes: {
    machine: { type: 'string' },
    task: { type: 'string' },
    state: { type: 'string' },
    context: { type: 'string' },
    stage: { type: 'string' },
    workflow: { type: 'string' },
    startTime: { type: 'string' },
  },
  normalise: (j) => ({ task: '', stage: '', workflow: '', bootEnv: '', context: '', state: 'created', exitState: '', previous: '', currentIndex: -1, resultErrors: [], ...j }),
  references: (j) => [{ prefix: 'machines', key: j.machine as string, field: 'machine' }],
});
