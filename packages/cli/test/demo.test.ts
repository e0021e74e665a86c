// `meshport demo` (what `npm run demo` runs): the whole flow completes and says what happened.

import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const BIN = path.resolve(__dirname, '../../bin/meshport.js');

describe('meshport demo', function () {
  this.timeout(60_000);

  it('runs Bolt and Dubbo calls through two routers and a tap, and exits 0 by itself', () => {
    const r = spawnSync(process.execPath, [BIN, 'demo'], { encoding: 'utf8', timeout: 50_000, env: { ...process.env, NO_COLOR: '1' } });
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout;
    assert.equal(out.match(/consumer got: "echo: hello meshport"/g)?.length, 2, out);
    assert.equal(out.match(/no route for service com\.example\.MissingService:1\.0 on the outbound listener/g)?.length, 2);
    assert.match(out, /bolt v1 response id=\d+ NO_PROCESSOR\(6\)/);
    assert.match(out, /dubbo response id=\d+ SERVICE_NOT_FOUND\(60\)/);
    assert.match(out, /meshport_responses_total\{listener="outbound",cluster="com\.example\.EchoService:1\.0",outcome="ok"\} 2/);
  });
});
