// The progress display: on a terminal one status line at the bottom (suite, bar, elapsed, estimate left) under the
// log lines; elsewhere (CI, a pipe) plain log lines with the same position in a prefix, so a log reads alike.

const BAR = 24;

function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export class Progress {
  private readonly t0 = Date.now();
  private suite = '';
  private index = 0;
  private suiteStart = 0;
  private fraction = 0;
  private last = '';
  private readonly tty: boolean;

  constructor(
    private readonly total: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = out.isTTY === true && process.env.TERM !== 'dumb';
  }

  startSuite(name: string): void {
    this.suite = name;
    this.index++;
    this.suiteStart = Date.now();
    this.fraction = 0;
    this.log('starting');
  }

  /** A line kept in the log. */
  log(line: string): void {
    this.last = line;
    if (this.tty) {
      this.out.write(`\r\x1b[2K[bench ${clock(Date.now() - this.t0)}] ${line}\n`);
      this.draw();
    } else {
      this.out.write(`[bench ${clock(Date.now() - this.t0)} ${this.where()}] ${line}\n`);
    }
  }

  update(done: number, total: number): void {
    if (!(total > 0)) return;
    this.fraction = Math.min(1, Math.max(0, done / total));
    if (this.tty) this.draw();
  }

  /** Clears the status line before the results go to stdout. */
  clear(): void {
    if (this.tty) this.out.write('\r\x1b[2K');
  }

  private where(): string {
    return `${this.index}/${this.total} ${this.suite} ${Math.round(this.fraction * 100)}%`;
  }

  private draw(): void {
    const filled = Math.round(this.fraction * BAR);
    const spent = Date.now() - this.suiteStart;
    const left = this.fraction > 0.05 ? ` ~${clock((spent / this.fraction) * (1 - this.fraction))} left` : '';
    const status = `${this.where()} [${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}] ${clock(spent)}${left}  ${this.last}`;
    const width = this.out.columns ?? 120;
    this.out.write(`\r\x1b[2K${status.slice(0, width - 1)}`);
  }
}
