// The `telemetry` section: its defaults, every key read, and each mistake on the line of its key.

import { strict as assert } from 'node:assert';
import path from 'node:path';
import { LABEL_CAP_DEFAULTS } from '@meshport/router';
import { parseConfig, SidecarError } from '../src/index';

function problems(text: string): string[] {
  try {
    parseConfig(text, 'meshport.yaml', {});
  } catch (err) {
    assert.ok(err instanceof SidecarError, String(err));
    assert.equal(err.code, 'MESHPORT_CONFIG_INVALID');
    return err.problems.map((p) => p.message);
  }
  assert.fail('expected a config error');
}

describe('sidecar config: telemetry', () => {
  it('is off without the section: no access log, no tracing, the default label caps', () => {
    assert.deepEqual(parseConfig('', 'meshport.yaml').telemetry, { labelCaps: LABEL_CAP_DEFAULTS });
    assert.deepEqual(parseConfig('telemetry: {}', 'meshport.yaml').telemetry, { labelCaps: LABEL_CAP_DEFAULTS });
  });

  it('fills the documented defaults and resolves files against the config file', () => {
    const { telemetry } = parseConfig(
      'telemetry:\n  accessLog: { to: logs/access.log }\n  tracing: { file: spans.json }\n',
      '/etc/meshport/meshport.yaml',
    );
    assert.deepEqual(telemetry, {
      accessLog: {
        to: path.resolve('/etc/meshport/logs/access.log'),
        everyN: 100,
        errors: true,
        slowMs: 1000,
        maxBytes: 104_857_600,
        keep: 5,
      },
      tracing: { file: path.resolve('/etc/meshport/spans.json'), everyN: 1 },
      labelCaps: { methods: 64, callers: 32 },
    });
  });

  it('reads every key', () => {
    const { telemetry } = parseConfig(
      [
        'telemetry:',
        '  accessLog: { to: stdout, everyN: 1, errors: false, slowMs: 0, maxBytes: 4096, keep: 0 }',
        '  tracing: { otlp: "http://127.0.0.1:4318", file: /var/log/spans.json, everyN: 10 }',
        '  labelCaps: { methods: 8, callers: 4 }',
      ].join('\n'),
      '/etc/meshport.yaml',
    );
    assert.deepEqual(telemetry, {
      accessLog: { to: 'stdout', everyN: 1, errors: false, slowMs: 0, maxBytes: 4096, keep: 0 },
      tracing: { otlp: 'http://127.0.0.1:4318', file: '/var/log/spans.json', everyN: 10 },
      labelCaps: { methods: 8, callers: 4 },
    });
  });

  it('reports every mistake of the section at once, each on its line', () => {
    const text = [
      'telemetry:', // 1
      '  accessLog:', // 2
      '    everyN: 0', // 3
      '    errors: sometimes', // 4
      '    slowMs: -5', // 5
      '    maxBytes: 1.5', // 6
      '    keep: many', // 7
      '    format: json', // 8
      '  tracing:', // 9
      '    otlp: "127.0.0.1:4318"', // 10
      '    everyN: 0', // 11
      '  labelCaps: { methods: 0, callers: "32", other: 1 }', // 12
      '  metrics: true', // 13
    ].join('\n');
    assert.deepEqual(problems(text), [
      'meshport.yaml:2: telemetry.accessLog.to: is required: stdout, or the path of a file',
      'meshport.yaml:3: telemetry.accessLog.everyN: must be an integer of at least 1, not 0',
      'meshport.yaml:4: telemetry.accessLog.errors: must be true or false',
      'meshport.yaml:5: telemetry.accessLog.slowMs: must be an integer of at least 0, not -5',
      'meshport.yaml:6: telemetry.accessLog.maxBytes: must be an integer of at least 1, not 1.5',
      'meshport.yaml:7: telemetry.accessLog.keep: must be an integer of at least 0, not "many"',
      'meshport.yaml:8: telemetry.accessLog.format: unknown key (known here: to, everyN, errors, slowMs, maxBytes, keep)',
      "meshport.yaml:10: telemetry.tracing.otlp: must be an http:// or https:// URL like http://127.0.0.1:4318, not '127.0.0.1:4318'",
      'meshport.yaml:11: telemetry.tracing.everyN: must be an integer of at least 1, not 0',
      'meshport.yaml:12: telemetry.labelCaps.other: unknown key (known here: methods, callers)',
      'meshport.yaml:12: telemetry.labelCaps.methods: must be an integer of at least 1, not 0',
      'meshport.yaml:12: telemetry.labelCaps.callers: must be an integer of at least 1, not "32"',
      'meshport.yaml:13: telemetry.metrics: unknown key (known here: accessLog, tracing, labelCaps)',
    ]);
  });

  it('a tracing block with no target, and a section that is not a mapping, name their lines', () => {
    assert.deepEqual(problems('log: { level: info }\ntelemetry:\n  tracing: { everyN: 5 }\n'), [
      'meshport.yaml:3: telemetry.tracing: names no target: give otlp (a collector URL), file (a path), or both',
    ]);
    assert.deepEqual(problems('telemetry: on\n'), ['meshport.yaml:1: telemetry: must be a mapping']);
    assert.deepEqual(problems('telemetry:\n  accessLog: { to: 7 }\n'), [
      'meshport.yaml:2: telemetry.accessLog.to: must be a string, not 7',
    ]);
  });
});
