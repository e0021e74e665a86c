// Access log lines on the sidecar's standard output, beside its own log (a log collector tells them apart by fields).

import type { Writable } from 'node:stream';
import type { LineWriter, Lines, WriterEvents } from './writer';

/** Past this many bytes the stream has not taken yet (a reader that stalls), batches are dropped, not held. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

export class StdoutWriter implements LineWriter {
  private closed = false;

  constructor(
    private readonly stream: Writable,
    private readonly events: WriterEvents,
  ) {}

  write(lines: Lines, count: number): void {
    if (this.closed) {
      this.events.dropped(count);
      return;
    }
    if (this.stream.writableLength > MAX_BUFFERED_BYTES) {
      this.events.dropped(count, new Error('standard output is not being read: new lines are dropped'));
      return;
    }
    this.stream.write(lines);
    this.events.written(count);
  }

  /** Standard output stays open (the sidecar's own log goes there too); nothing of ours waits. */
  async close(): Promise<void> {
    this.closed = true;
  }
}
