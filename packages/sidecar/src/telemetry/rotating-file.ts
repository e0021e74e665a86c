// An append-only file of whole lines, renamed aside by size: `file` -> `file.1` -> ... -> `file.<keep>`.

import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import type { LineWriter, Lines, WriterEvents } from './writer';

export interface RotatingFileOptions {
  path: string;
  /** Past this size the file is renamed `.1` before the next batch is written. */
  maxBytes: number;
  /** Renamed files kept; 0 keeps none (the file is removed and started again). */
  keep: number;
}

/**
 * Batches that arrive while a write is under way wait their turn; each is one write, so a batch is never split across
 * files (a file may pass maxBytes by one batch), and a rotation falls between two batches. A
 * batch that cannot be written (a full disk, a removed directory) is dropped and counted: the next one tries again
 * with the file opened anew. Past this many bytes waiting, new batches are dropped rather than held in memory.
 */
const MAX_WAITING_BYTES = 16 * 1024 * 1024;

export class RotatingFile implements LineWriter {
  private file: FileHandle | undefined;
  private size = 0;
  private waiting: Lines[] = [];
  private counts: number[] = [];
  private waitingLines = 0;
  private waitingBytes = 0;
  private writing: Promise<void> | undefined;
  private closed = false;

  constructor(
    readonly options: RotatingFileOptions,
    private readonly events: WriterEvents,
  ) {}

  write(lines: Lines, count: number): void {
    if (this.closed) {
      this.events.dropped(count);
      return;
    }
    if (this.waitingBytes + lines.length > MAX_WAITING_BYTES) {
      this.events.dropped(
        count,
        new Error(`${MAX_WAITING_BYTES} bytes are waiting for the disk: new lines are dropped`),
      );
      return;
    }
    this.waiting.push(lines);
    this.counts.push(count);
    this.waitingLines += count;
    this.waitingBytes += lines.length;
    this.writing ??= this.writeWaiting();
  }

  /** Writes what is waiting (within `waitMs`), then closes the file; later batches are dropped. */
  async close(waitMs: number): Promise<void> {
    this.closed = true;
    if (this.writing) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, waitMs);
      });
      await Promise.race([this.writing, late]);
      clearTimeout(timer);
    }
    if (this.waitingLines > 0) this.events.dropped(this.waitingLines);
    this.waiting = [];
    this.counts = [];
    this.waitingLines = 0;
    const file = this.file;
    this.file = undefined;
    await file?.close().catch(() => undefined);
  }

  private async writeWaiting(): Promise<void> {
    while (this.waiting.length > 0) {
      const batch = this.waiting.shift()!;
      const count = this.counts.shift()!;
      this.waitingLines -= count;
      this.waitingBytes -= batch.length;
      try {
        // The native engine's batches are bytes already: written as they are.
        await this.append(typeof batch === 'string' ? Buffer.from(batch) : batch);
        this.events.written(count);
      } catch (error) {
        this.events.dropped(count, error as Error);
        const file = this.file;
        this.file = undefined;
        await file?.close().catch(() => undefined);
      }
    }
    this.writing = undefined;
  }

  private async append(bytes: Buffer): Promise<void> {
    if (!this.file) await this.open();
    if (this.size > 0 && this.size + bytes.length > this.options.maxBytes) await this.rotate();
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.file!.write(bytes, done, bytes.length - done);
      done += bytesWritten;
    }
    this.size += bytes.length;
  }

  private async open(): Promise<void> {
    const file = await open(this.options.path, 'a');
    try {
      this.size = (await file.stat()).size;
    } catch (error) {
      await file.close();
      throw error;
    }
    this.file = file;
  }

  private async rotate(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    await file?.close();
    const { path, keep } = this.options;
    if (keep === 0) await unlink(path).catch(ignoreMissing);
    else {
      for (let i = keep - 1; i >= 1; i--) await rename(`${path}.${i}`, `${path}.${i + 1}`).catch(ignoreMissing);
      await rename(path, `${path}.1`);
    }
    await this.open();
  }
}

function ignoreMissing(error: NodeJS.ErrnoException): void {
  if (error.code !== 'ENOENT') throw error;
}
