/**
 * The layering rules (.dependency-cruiser.cjs, `npm run check:layers`) catch
 * what they name: a fixture tree breaks each rule once, and each break is
 * reported under its rule's name. The real src/ is checked by `npm test`
 * before the test runner starts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURE = fileURLToPath(new URL('../fixtures/layers/', import.meta.url));
const DEPCRUISE = `${ROOT}node_modules/dependency-cruiser/bin/dependency-cruise.mjs`;

test('every layering rule reports its violation by name, and the check fails', () => {
  const run = spawnSync(process.execPath, [DEPCRUISE, '--config', `${ROOT}.dependency-cruiser.cjs`, '--output-type', 'err', 'src'], { cwd: FIXTURE, encoding: 'utf8' });
  assert.notEqual(run.status, 0, run.stdout + run.stderr);
  const found = [...run.stdout.matchAll(/error ([a-z-]+): (\S+) → (\S+)?/g)].map((m) => `${m[1]}: ${m[2]} → ${m[3] ?? ''}`).sort();
  assert.deepEqual(found, [
    'brokers-never-call-up: src/brokers/up.ts → src/realtime/hub.ts',
    'browser-safe-no-node: src/wire/up.ts → net',
    'carriers-never-import-server: src/carriers/ws.ts → src/server/server.ts',
    'client-imports-only-wire: src/client/reach.ts → src/realtime/hub.ts',
    'no-circular: src/realtime/hub.ts → ',
    'protocol-imports-nothing-above: src/protocol/io.ts → src/wire/up.ts',
    'protocol-no-io: src/protocol/io.ts → fs',
    'realtime-sees-seams-only: src/realtime/hub.ts → src/carriers/ws.ts',
    'wire-imports-only-protocol: src/wire/up.ts → src/realtime/hub.ts',
  ]);
});
