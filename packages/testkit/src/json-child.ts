// A child process whose stdout is JSON lines (pino logs, or a helper script's messages): every line kept, and a wait
// for the first line that matches, failing with everything the child printed when it times out or exits first.

import type { ChildProcess } from 'node:child_process';

// biome-ignore lint/suspicious/noExplicitAny: a JSON line's shape is what each test asserts; `any` lets it read nested fields without a cast at every step.
export type Json = Record<string, any>;

/** A child process whose stdout is JSON lines; everything it printed is kept. */
export class JsonLinesChild {
  readonly lines: Json[] = [];
  private text = '';
  private stderr = '';
  private waiters: { match: (m: Json) => boolean; resolve: (m: Json) => void }[] = [];
  readonly exited: Promise<void>;

  constructor(
    readonly what: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    let pending = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      this.text += chunk;
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (!line.startsWith('{')) continue;
        let m: Json;
        try {
          m = JSON.parse(line) as Json;
        } catch {
          continue;
        }
        this.lines.push(m);
        const waiting = this.waiters;
        this.waiters = [];
        for (const w of waiting) {
          if (w.match(m)) w.resolve(m);
          else this.waiters.push(w);
        }
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
  }

  waitFor(match: (m: Json) => boolean, what: string, timeoutMs = 15000): Promise<Json> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`${this.what}: timed out waiting for ${what}\nstdout: ${this.text}\nstderr: ${this.stderr}`),
          ),
        timeoutMs,
      );
      const onExit = () =>
        reject(
          new Error(
            `${this.what} exited (${this.child.exitCode ?? this.child.signalCode}) before ${what}\nstdout: ${this.text}\nstderr: ${this.stderr}`,
          ),
        );
      this.child.once('exit', onExit);
      this.waiters.push({
        match,
        resolve: (m) => {
          clearTimeout(timer);
          this.child.off('exit', onExit);
          resolve(m);
        },
      });
    });
  }

  output(): string {
    return `stdout: ${this.text}\nstderr: ${this.stderr}`;
  }

  /** SIGKILL by this child's own pid (exec chains such as sh -> ip netns exec -> setpriv -> node keep one pid). */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}
