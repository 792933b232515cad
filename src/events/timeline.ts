// Timeline entries (SPEC 7.1/7.3): everything that happens to a machine, appended to the machine's own
// capped stream and published as `timeline.{entryType}.{machineUuid}` on the global stream.
import type { Redis } from 'ioredis';
import type { Principal } from '../models/principal.js';
import { principalId } from '../models/principal.js';
import type { StoreKeys } from '../store/keys.js';
import type { EventBus } from './bus.js';

/** The Equinix-style entry clients see. */
export interface TimelineEntry {
  id: string;
  type: string;
  state: string;
  body: unknown;
  createdAt: string;
  machine: string;
}

export interface TimelineInput {
  /** e.g. `machine.created`, `boot.file_served`, `bmc.request`, `user.1000`, `provisioning.phone_home` */
  type: string;
  state?: string;
  body?: unknown;
}

// Both appends in one script (one round trip, and never an entry without its publication).
// KEYS[1] the machine's timeline, KEYS[2] the global stream. ARGV[1] timeline maxlen, ARGV[2] type,
// ARGV[3] state, ARGV[4] body JSON, ARGV[5] createdAt, ARGV[6] global maxlen, ARGV[7] machine uuid,
// ARGV[8] principal, ARGV[9] the published entry's JSON without its leading `{"id":…,` (the id is
// known only here). Returns the entry id.
const RECORD = `
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'type', ARGV[2], 'state', ARGV[3], 'body', ARGV[4], 'createdAt', ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'type', 'timeline', 'action', ARGV[2], 'key', ARGV[7], 'principal', ARGV[8], 'time', ARGV[5], 'object', '{"id":"' .. id .. '",' .. ARGV[9])
return id
`;

type RecordScript = { ironflowTimelineRecord(timeline: string, events: string, ...args: string[]): Promise<string> };

export class Timeline {
  constructor(
    private readonly redis: Redis,
    private readonly keys: StoreKeys,
    private readonly bus: EventBus,
    private readonly maxLenPerMachine: number,
  ) {
    redis.defineCommand('ironflowTimelineRecord', { numberOfKeys: 2, lua: RECORD });
  }

  /** Appends an entry and publishes it; resolves once both are stored (the caller may acknowledge). */
  async record(machineUuid: string, input: TimelineInput, principal: Principal): Promise<TimelineEntry> {
    const createdAt = new Date().toISOString();
    const state = input.state ?? '';
    const bodyValue = input.body ?? null;
    const body = JSON.stringify(bodyValue);
    // the same bytes JSON.stringify(entry) gives, with `id` first
    const rest = `${JSON.stringify({ type: input.type, state }).slice(1, -1)},"body":${body},${JSON.stringify({ createdAt, machine: machineUuid }).slice(1)}`;
    const id = await (this.redis as unknown as RecordScript).ironflowTimelineRecord(this.keys.timeline(machineUuid), this.keys.events(),
      String(this.maxLenPerMachine), input.type, state, body, createdAt, String(this.bus.maxLen), machineUuid, principalId(principal), rest);
    return { id, type: input.type, state, body: bodyValue, createdAt, machine: machineUuid };
  }
}
