// The built binary answers --version: the node test harness can reach it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

const bin = process.env.MIXSERVE_BIN ?? 'build/mixserve';

test('mixserve info runs', () => {
  const out = execFileSync(bin, ['info'], { encoding: 'utf8' });
  assert.match(out, /^mixserve \d+\.\d+\.\d+/);
});
