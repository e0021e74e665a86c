// Preloaded (`node --require join-cgroup.js RUNNER`) into a runner of the forward suite's sockmap case: moves this
// process into the cgroup MESHPORT_BENCH_JOIN_CGROUP names before the runner opens any socket (a socket belongs to
// the cgroup its process was in when it was made, so joining later would leave the listener outside).

import { writeFileSync } from 'node:fs';
import * as path from 'node:path';

const cgroup = process.env.MESHPORT_BENCH_JOIN_CGROUP;
if (cgroup) {
  writeFileSync(path.join(cgroup, 'cgroup.procs'), `${process.pid}\n`);
  // Its own children (none today) must not inherit the variable and try again elsewhere.
  delete process.env.MESHPORT_BENCH_JOIN_CGROUP;
}
