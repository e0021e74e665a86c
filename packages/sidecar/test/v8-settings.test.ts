// The daemon's V8 heap settings: applied unless the operator's node flags or NODE_OPTIONS name the same setting.

import { strict as assert } from 'node:assert';
import { applySidecarV8Settings, SIDECAR_V8_SETTINGS } from '../src/v8-settings';

function applied(execArgv: string[], nodeOptions: string): string[] {
  const set: string[] = [];
  const returned = applySidecarV8Settings(execArgv, nodeOptions, (flags) => set.push(flags));
  assert.deepEqual(returned, set, 'returns what it set');
  return set;
}

describe('sidecar V8 settings', () => {
  it('applies every setting when the operator chose none', () => {
    assert.deepEqual(
      applied(['--expose-gc'], '--enable-source-maps'),
      SIDECAR_V8_SETTINGS.map((s) => s.flag),
    );
  });

  it("leaves a setting to the operator's node flags or NODE_OPTIONS, in either spelling", () => {
    assert.deepEqual(applied([], '--max-semi-space-size=16'), ['--heap-growing-percent=20']);
    assert.deepEqual(applied(['--min_semi_space_size=4'], ''), ['--heap-growing-percent=20']);
    assert.deepEqual(applied(['--heap-growing-percent', '50'], ''), ['--semi-space-growth-factor=1']);
    assert.deepEqual(applied(['--semi-space-growth-factor=2'], '  --heap_growing_percent=0 '), []);
  });

  it('does not take a longer flag for one of its own', () => {
    assert.deepEqual(
      applied(['--max-semi-space-size-x=1'], ''),
      SIDECAR_V8_SETTINGS.map((s) => s.flag),
    );
  });
});
