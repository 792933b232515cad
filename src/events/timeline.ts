// Timeline entries (SPEC 7.1/7.3): everything that happens to a machine, appended to the machine's own
// capped stream and published as `timeline.{entryType}.{machineUuid}` on the global stream.
import type { Redis } from 'ioredis';
import type { Principal } from '../models/principal.js';
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

export class Timeline {
  constructor(
    private readonly redis: Redis,
    private readonly keys: StoreKeys,
    private readonly bus: EventBus,
    private readonly maxLenPerMachine: number,
  ) {}

  /** Appends an entry and publishes it; resolves once both are stored (the caller may acknowledge). */
  async record(machineUuid: string, input: TimelineInput, principal: Principal): Promise<TimelineEntry> {
    const createdAt = new Date().toISOString();
    const state = input.state ?? '';
    const body = JSON.stringify(input.body ?? null);
    const id = (await this.redis.xadd(this.keys.timeline(machineUuid), 'MAXLEN', '~', String(this.maxLenPerMachine), '*',
      'type', input.type, 'state', state, 'body', body, 'createdAt', createdAt))!;
    const entry: TimelineEntry = { id, type: input.type, state, body: input.body ?? null, createdAt, machine: machineUuid };
    await this.bus.publish({ type: 'timeline', action: input.type, key: machineUuid, object: entry, principal });
    return entry;
  }
}
