// The machines kind: identity, boot state, workflow position, power, and the rules that keep them sane.
import { randomBytes, randomUUID } from 'node:crypto';
import { Type } from 'typebox';
import { defineKind, NameSchema, objectSchema, ParamsMapSchema, type StoredObject } from './common.js';

export const MachineSchema = objectSchema('Machine', {
  uuid: Type.Optional(Type.String({ format: 'uuid' })),
  name: Type.String({ minLength: 1, maxLength: 253 }),
  address: Type.Optional(Type.String({ description: 'IPv4 address; unique when set' })),
  hardwareAddrs: Type.Optional(Type.Array(Type.String(), { maxItems: 64 })),
  arch: Type.Optional(Type.String({ default: 'amd64' })),
  bootEnv: Type.Optional(Type.String()),
  stage: Type.Optional(Type.String()),
  workflow: Type.Optional(Type.String()),
  profiles: Type.Optional(Type.Array(NameSchema, { maxItems: 256 })),
  params: Type.Optional(ParamsMapSchema),
  tasks: Type.Optional(Type.Array(Type.String(), { maxItems: 10000 })),
  currentTask: Type.Optional(Type.Integer({ minimum: -1 })),
  currentJob: Type.Optional(Type.String()),
  runnable: Type.Optional(Type.Boolean()),
  locked: Type.Optional(Type.Boolean()),
  context: Type.Optional(Type.String()),
  os: Type.Optional(Type.String()),
  taskErrorStacks: Type.Optional(Type.Array(Type.Array(Type.String()))),
  retryTaskAttempt: Type.Optional(Type.Integer({ minimum: 0 })),
  workflowComplete: Type.Optional(Type.Boolean()),
  power: Type.Optional(Type.Object({
    state: Type.Union([Type.Literal('on'), Type.Literal('off'), Type.Literal('unknown')]),
    checkedAt: Type.Optional(Type.String()),
  }, { additionalProperties: false })),
  fingerprint: Type.Optional(Type.Object({
    ssnHash: Type.Optional(Type.String()),
    csnHash: Type.Optional(Type.String()),
    systemUuid: Type.Optional(Type.String()),
    cloudInstanceId: Type.Optional(Type.String()),
    memoryIds: Type.Optional(Type.Array(Type.String())),
  }, { additionalProperties: false })),
  secret: Type.Optional(Type.String({ description: 'token signing secret; never returned' })),
  engine: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'workflow runner state (jobs/runner.ts); never returned' })),
});

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const ARCHES = ['amd64', 'arm64', 'arm', 'ppc64le', 's390x', 'riscv64', 'i386'];
const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', aarch64: 'arm64', i686: 'i386' };

/** Normalises a MAC written with `:`, `-`, `.` or none to lowercase `aa:bb:cc:dd:ee:ff`; undefined when it is not one. */
export function normaliseMac(raw: string): string | undefined {
  const hex = raw.trim().toLowerCase().replace(/[:\-.]/g, '');
  if (!/^[0-9a-f]{12}$/.test(hex)) return undefined;
  return hex.match(/../g)!.join(':');
}

export function isIPv4(s: string): boolean {
  return IPV4.test(s);
}

export const machines = defineKind({
  prefix: 'machines',
  key: 'uuid',
  schema: MachineSchema,
  description: 'Physical or virtual machines Ironflow boots and provisions',
  hasParams: true,
  hidden: ['secret', 'engine'],
  generateKey: () => randomUUID(),
  indexes: {
    name: { type: 'string', unique: true },
    address: { type: 'string', unique: true },
    hardwareAddrs: { type: 'string', unique: true, multi: true, normalise: (v) => normaliseMac(v) ?? v },
    bootEnv: { type: 'string' },
    stage: { type: 'string' },
    workflow: { type: 'string' },
    profiles: { type: 'string', multi: true },
    runnable: { type: 'boolean' },
    context: { type: 'string' },
    currentTask: { type: 'integer' },
    workflowComplete: { type: 'boolean' },
  },
  normalise(m: StoredObject): StoredObject {
    const macs = (m.hardwareAddrs as string[] | undefined) ?? [];
    return {
      arch: 'amd64',
      bootEnv: '',
      stage: '',
      workflow: '',
      profiles: [],
      params: {},
      tasks: [],
      currentTask: -1,
      currentJob: '',
      runnable: true,
      locked: false,
      context: '',
      taskErrorStacks: [],
      retryTaskAttempt: 0,
      workflowComplete: false,
      power: { state: 'unknown' },
      ...m,
      uuid: typeof m.uuid === 'string' ? m.uuid.toLowerCase() : m.uuid,
      hardwareAddrs: [...new Set(macs.map((mac) => normaliseMac(mac) ?? mac))],
      secret: typeof m.secret === 'string' && m.secret ? m.secret : randomBytes(24).toString('base64url'),
    };
  },
  createDefaults(m: StoredObject, prefs) {
    return {
      ...m,
      bootEnv: m.bootEnv || prefs.defaultBootEnv || 'local',
      stage: m.stage || prefs.defaultStage || 'none',
      workflow: m.workflow ?? prefs.defaultWorkflow ?? '',
    };
  },
  check(m: StoredObject): string[] {
    const problems: string[] = [];
    const name = m.name as string;
    if (!HOSTNAME.test(name)) problems.push(`name: "${name}" is not a valid hostname (letters, digits, '-' and '.')`);
    if (m.address !== undefined && m.address !== '' && !isIPv4(m.address as string)) {
      problems.push(`address: "${String(m.address)}" is not an IPv4 address`);
    }
    for (const mac of (m.hardwareAddrs as string[] | undefined) ?? []) {
      if (!normaliseMac(mac)) problems.push(`hardwareAddrs: "${mac}" is not a MAC address`);
    }
    const arch = m.arch as string;
    if (ARCH_ALIASES[arch]) problems.push(`arch: "${arch}" is not accepted; use "${ARCH_ALIASES[arch]}"`);
    else if (!ARCHES.includes(arch)) problems.push(`arch: "${arch}" is not one of ${ARCHES.join(', ')}`);
    return problems;
  },
  references(m: StoredObject) {
    const refs = ((m.profiles as string[] | undefined) ?? []).map((p, i) => ({ prefix: 'profiles', key: p, field: `profiles/${i}` }));
    if (m.bootEnv) refs.push({ prefix: 'bootenvs', key: m.bootEnv as string, field: 'bootEnv' });
    if (m.stage) refs.push({ prefix: 'stages', key: m.stage as string, field: 'stage' });
    if (m.workflow) refs.push({ prefix: 'workflows', key: m.workflow as string, field: 'workflow' });
    return refs;
  },
});
