/**
 * Importing this module registers an `after` hook (centrifuge-style): after
 * the last test of the file, no socket, server, timer or child process opened
 * by the tests may remain. The test process must exit by itself.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { WAIT } from './wait.js';

after(async () => {
  const leaks = (): string[] =>
    process.getActiveResourcesInfo().filter((r) => r === 'TCPWRAP' || r === 'TCPServerWrap' || r === 'TLSWrap' || r === 'Timeout' || r === 'ProcessWrap');
  const deadline = Date.now() + WAIT;
  while (leaks().length > 0 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(leaks(), [], 'handles left open after the tests');
});
