/**
 * `switchboard serve` warns at start when the open-files limit is below
 * limits.maxConnections (+ headroom): the limit is read from /proc/self/limits
 * of the real process, run under `ulimit -n`. And the parsing of that file.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FD_HEADROOM, fdLimitWarning, openFilesLimit } from '../../../src/server/fd-limit.js';
import { runCli } from '../../support/cli.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             96367                96367                processes
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

test('openFilesLimit reads the soft limit; unlimited or missing is null', () => {
  assert.equal(openFilesLimit(LIMITS), 1024);
  assert.equal(openFilesLimit(LIMITS.replace('1024  ', 'unlimited')), null);
  assert.equal(openFilesLimit('Limit Soft Hard\n'), null);
  // This process (Linux): a number.
  assert.equal(typeof openFilesLimit(), 'number');
});

test('fdLimitWarning: below maxConnections + headroom warns with the numbers, at or above it does not', () => {
  const w = fdLimitWarning(1024, 10_000);
  assert.ok(w);
  assert.equal(w.openFilesLimit, 1024);
  assert.equal(w.needed, 10_000 + FD_HEADROOM);
  assert.match(w.msg, /ulimit -n/);
  assert.match(w.msg, /limits\.maxConnections \(10000\)/);
  assert.equal(fdLimitWarning(10_000 + FD_HEADROOM, 10_000), null);
  assert.equal(fdLimitWarning(null, 10_000), null);
});

test('serve under ulimit -n 512 (maxConnections 10000) logs the warning at start and still serves', async (t) => {
  const s = runCli(t, ['serve', '--port', '0'], { openFiles: 512 });
  const warning = await s.log((l) => /open-files limit/.test(String(l.msg)), 'the open-files warning');
  assert.equal(warning.level, 40);
  assert.equal(warning.openFilesLimit, 512);
  assert.equal(warning.needed, 10_000 + FD_HEADROOM);
  await s.log((l) => l.msg === 'listening', "the 'listening' log line");
  await s.stop();
});

test('serve with a limit above maxConnections + headroom: no warning', async (t) => {
  const s = runCli(t, ['serve', '--port', '0'], { openFiles: 10_000 + FD_HEADROOM });
  await s.log((l) => l.msg === 'listening', "the 'listening' log line");
  assert.equal(s.logs.find((l) => /open-files limit/.test(String(l.msg))), undefined);
  await s.stop();
});
