// Config mistakes as an operator meets them: all of them in one run, each on the line where its key is written.

import { strict as assert } from 'node:assert';
import { parseConfig, SidecarError } from '../src/index';

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, 'meshport.yaml', env);
  } catch (err) {
    assert.ok(err instanceof SidecarError, String(err));
    assert.equal(err.code, 'MESHPORT_CONFIG_INVALID');
    assert.equal(err.message, err.problems.map((p) => p.message).join('\n'));
    return err.problems.map((p) => p.message);
  }
  assert.fail('expected a config error');
}

describe('sidecar config errors', () => {
  it('reports every mistake of the file at once, in the order of the file', () => {
    const text = [
      'admin: 10.0.0.5:15000', // 1
      'listeners:', // 2
      '  outbund: 127.0.0.1:1', // 3
      '  inbound: nowhere', // 4
      'registries:', // 5
      '  - name: zk', // 6
      '    type: zookeeper', // 7
      '  - name: mesh', // 8
      '    type: sofa-mesh', // 9
      '    via: nowhere', // 10
      'router:', // 11
      '  connectTimeoutMs: soon', // 12
      '  connectionsPerEndpoint: -1', // 13
      'log: { level: loud }', // 14
      'hijack:', // 15
      '  mode: magic', // 16
      '  uid: root', // 17
      'colour: blue', // 18
      'node: { ip: ${POD_IP} }', // 19
    ].join('\n');
    assert.deepEqual(problems(text), [
      'meshport.yaml:1: admin: the admin port serves loopback only; 10.0.0.5 is not a loopback address',
      'meshport.yaml:3: listeners.outbund: unknown key (known here: outbound, inbound, allowRemote)',
      'meshport.yaml:4: listeners.inbound: must be HOST:PORT (or a port), not "nowhere"',
      'meshport.yaml:6: registries[0].upstream: is required for a zookeeper registry',
      'meshport.yaml:10: registries[1].via: names no registry in this list (have: mesh)',
      'meshport.yaml:12: router.connectTimeoutMs: must be a non-negative integer',
      'meshport.yaml:13: router.connectionsPerEndpoint: must be a non-negative integer',
      'meshport.yaml:14: log.level: must be one of fatal, error, warn, info, debug, trace, silent',
      'meshport.yaml:16: hijack.mode: must be one of redirect, tproxy, connect-hook',
      'meshport.yaml:17: hijack.uid: must be a uid, a non-negative integer',
      'meshport.yaml:18: colour: unknown key (known here: node, listeners, admin, registries, router, log, hijack, tls, authz, telemetry)',
      'meshport.yaml:19: ${POD_IP}: the environment variable POD_IP is not set',
    ]);
  });

  it('names the line of the key, not of its block value', () => {
    assert.deepEqual(problems('node:\n  ip: 10.0.0.1\nregistries:\n  name: a\n  type: file\n'), [
      'meshport.yaml:3: registries: must be a list',
    ]);
    assert.deepEqual(problems('log:\n  level:\n    - debug\n'), [
      'meshport.yaml:2: log.level: must be a string, not ["debug"]',
    ]);
    assert.deepEqual(problems('listeners:\n  inbound:\n    host: 0.0.0.0\n'), [
      'meshport.yaml:2: listeners.inbound: must be HOST:PORT (or a port), not {"host":"0.0.0.0"}',
    ]);
    // A list is not a port, whatever its text reads as.
    assert.deepEqual(problems('admin:\n  - 15000\n'), [
      'meshport.yaml:1: admin: must be HOST:PORT (or a port), not [15000]',
    ]);
  });

  it('puts a mis-indented line on its own line, with what is wrong with it', () => {
    assert.deepEqual(problems('listeners:\n  outbound: 127.0.0.1:1\n    inbound: 127.0.0.1:2\n'), [
      'meshport.yaml:3: not valid YAML: this line is indented deeper than the key above it (keys of one mapping line up)',
    ]);
    assert.deepEqual(problems('registries:\n- name: a\n  type: file\n    upstream: x.json\nadmin: 1\n  log: 2\n'), [
      'meshport.yaml:4: not valid YAML: this line is indented deeper than the key above it (keys of one mapping line up)',
      'meshport.yaml:6: not valid YAML: this line is indented deeper than the key above it (keys of one mapping line up)',
    ]);
  });

  it('puts an unclosed [ or { on the line where it opened', () => {
    assert.deepEqual(
      problems('node:\n  ip: 10.0.0.1\nregistries: [ { name: a, type: file }\nadmin: 127.0.0.1:15000\n').slice(0, 1),
      ['meshport.yaml:3: not valid YAML: the [ opened on this line is not closed with ]'],
    );
    assert.deepEqual(problems('log: { level: info\nadmin: 1\n').slice(0, 1), [
      'meshport.yaml:1: not valid YAML: the { opened on this line is not closed with }',
    ]);
  });
});
