// Per-source-address token buckets for unauthenticated endpoints (SPEC 10). Per process: N api
// processes behind a balancer allow N times the rate, which bounds abuse without a Redis round trip
// on the boot hot path.

export interface RateLimit {
  /** sustained requests per second per address */
  perSecond: number;
  /** requests allowed in a burst */
  burst: number;
}

/** The limit classes routes (and TFTP) name in their config. */
export const RateLimits = {
  /** POST /api/v1/auth/token: password guessing */
  auth: { perSecond: 1, burst: 10 },
  /** /boot/* and TFTP: firmware fetches a handful of files per boot */
  boot: { perSecond: 50, burst: 200 },
  /** discovery: creates machines */
  discovery: { perSecond: 1, burst: 5 },
  /** /metadata, /events, /phone-home from machines */
  machine: { perSecond: 20, burst: 100 },
} as const satisfies Record<string, RateLimit>;

export type RateLimitClass = keyof typeof RateLimits;

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly limit: RateLimit, private readonly maxKeys = 100_000, private readonly now = () => Date.now()) {}

  /** Takes one token for `key`; returns 0 when allowed, else the seconds until one is available. */
  take(key: string): number {
    const t = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.limit.burst, at: t };
    b.tokens = Math.min(this.limit.burst, b.tokens + ((t - b.at) / 1000) * this.limit.perSecond);
    b.at = t;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      this.remember(key, b);
      return 0;
    }
    this.remember(key, b);
    return Math.ceil((1 - b.tokens) / this.limit.perSecond);
  }

  private remember(key: string, b: { tokens: number; at: number }): void {
    if (!this.buckets.has(key) && this.buckets.size >= this.maxKeys) {
      // Drop the oldest entries (Map keeps insertion order): full buckets are what they would refill to anyway.
      for (const k of [...this.buckets.keys()].slice(0, Math.ceil(this.maxKeys / 10))) this.buckets.delete(k);
    }
    this.buckets.set(key, b);
  }
}

export class RateLimiters {
  private readonly limiters = new Map<RateLimitClass, RateLimiter>();
  private readonly limits: Record<RateLimitClass, RateLimit> | null;

  /** @param overrides per-class limits replacing the defaults, or null to turn limiting off (benchmarks) */
  constructor(overrides: Partial<Record<string, RateLimit>> | null = {}) {
    this.limits = overrides === null ? null : { ...RateLimits, ...overrides };
  }

  take(cls: RateLimitClass, address: string): number {
    if (!this.limits) return 0;
    let l = this.limiters.get(cls);
    if (!l) this.limiters.set(cls, (l = new RateLimiter(this.limits[cls])));
    return l.take(address);
  }
}
