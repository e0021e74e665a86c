// Loaded with the kit's main entry, i.e. by test code: a root-level mocha `after` hook and SIGINT/SIGTERM handlers
// that stop the servers the suites forgot. Not loaded by `@meshport/testkit/zookeeper` (the demo), whose Ctrl-C
// stops its children in its own order; the exit hook in ./processes covers both.

import { STOP_GRACE_MS, killAllServersSync, stopAllServers } from './processes';

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAllServersSync();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}

// A root-level hook when this module is loaded while mocha loads spec files (mocha's globals, not its types: the kit
// declares no dependency on mocha).
const after = (
  globalThis as { after?: (title: string, fn: (this: { timeout(ms: number): void }) => Promise<void>) => void }
).after;
if (typeof after === 'function') {
  after('stop servers the suites left running', async function () {
    this.timeout(STOP_GRACE_MS + 5_000);
    await stopAllServers();
  });
}
