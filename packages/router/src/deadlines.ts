// Request deadlines on one coarse timer: a call joins a 10 ms slot instead of owning a setTimeout.
//
// A setTimeout/clearTimeout pair per request allocated a Timeout object and walked Node's timer lists on every call;
// under load that was a visible share of the router's CPU and garbage. Timeouts fire up to one tick late.

export interface Expiring {
  /** Absolute deadline, in performance.now() milliseconds. */
  deadline: number;
}

export class DeadlineWheel<T extends Expiring> {
  private readonly slots = new Map<number, Set<T>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly onExpire: (item: T) => void,
    private readonly tickMs = 10,
  ) {}

  add(item: T): void {
    const slot = Math.ceil(item.deadline / this.tickMs);
    let set = this.slots.get(slot);
    if (set === undefined) this.slots.set(slot, (set = new Set()));
    set.add(item);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    }
  }

  remove(item: T): void {
    const slot = Math.ceil(item.deadline / this.tickMs);
    const set = this.slots.get(slot);
    if (set === undefined) return;
    set.delete(item);
    if (set.size === 0) this.slots.delete(slot);
  }

  private tick(): void {
    const now = Math.floor(performance.now() / this.tickMs);
    for (const [slot, set] of this.slots) {
      if (slot > now) continue;
      this.slots.delete(slot);
      for (const item of set) this.onExpire(item);
    }
    if (this.slots.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
