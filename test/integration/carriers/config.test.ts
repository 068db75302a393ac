/**
 * The `fallbacks` configuration key: defaults, validation (every problem as
 * `path: message`), the environment switch.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, defaultConfig, loadConfig, validateConfig } from '../../../src/server/config/index.js';

const base = { auth: { anonymous: true } };

function problems(fallbacks: unknown): string[] {
  try {
    validateConfig({ ...base, fallbacks });
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return [...err.lines];
  }
  return [];
}

// The defaults themselves are pinned, as docs/configuration.md lists them, in test/unit/server/config.test.ts.
test('fallbacks: a layer that sets one key keeps the documented defaults of the others', () => {
  const merged = validateConfig({ ...base, fallbacks: { graceMs: 5000 } }).fallbacks;
  assert.deepEqual(merged, { ...defaultConfig().fallbacks, graceMs: 5000 });
  assert.equal(merged.pollTimeoutMs, 25000);
  assert.equal(merged.bufferBytes, 1048576);
});

test('fallbacks validation names each bad field', () => {
  assert.deepEqual(problems({ enabled: 'yes' }), ['fallbacks.enabled: expected a boolean, got string "yes"']);
  assert.deepEqual(problems({ graceMs: 0 }), ['fallbacks.graceMs: must be at least 1, got 0']);
  assert.deepEqual(problems({ pollTimeoutMs: 300000 }), ['fallbacks.pollTimeoutMs: must be between 1 and 120000, got 300000']);
  assert.deepEqual(problems({ sseKeepAliveMs: 1.5 }), ['fallbacks.sseKeepAliveMs: expected an integer, got number 1.5']);
  assert.deepEqual(problems({ sseRetryMs: -1 }), ['fallbacks.sseRetryMs: must be at least 0, got -1']);
  assert.deepEqual(problems({ bufferMessages: 0, bufferBytes: 0 }), [
    'fallbacks.bufferMessages: must be at least 1, got 0',
    'fallbacks.bufferBytes: must be at least 1, got 0',
  ]);
  assert.deepEqual(problems({ graceMS: 1 }), ['fallbacks.graceMS: unknown key (did you mean graceMs?)']);
  assert.deepEqual(problems(true), ['fallbacks: expected an object, got boolean true']);
});

test('SWITCHBOARD_FALLBACKS turns the fallbacks off', () => {
  const config = loadConfig({ env: { SWITCHBOARD_FALLBACKS: 'off', SWITCHBOARD_ANONYMOUS: 'true' } });
  assert.equal(config.fallbacks.enabled, false);
});
