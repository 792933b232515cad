// A small LRU map bounded by entry count and by total key length (keys are template sources).
export class Lru<V> {
  private readonly map = new Map<string, V>();
  private weight = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxKeyChars: number,
  ) {}

  get(key: string): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    if (this.map.delete(key)) this.weight -= key.length;
    this.map.set(key, value);
    this.weight += key.length;
    while (this.map.size > this.maxEntries || (this.weight > this.maxKeyChars && this.map.size > 1)) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.map.delete(oldest.value);
      this.weight -= oldest.value.length;
    }
  }

  clear(): void {
    this.map.clear();
    this.weight = 0;
  }

  get size(): number {
    return this.map.size;
  }
}
