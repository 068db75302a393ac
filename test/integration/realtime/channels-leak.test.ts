/**
 * No leaks over connect/disconnect cycles (MISSION: WS-030). The cycles run
 * in a child process started with `--expose-gc` (channels-leak-child.ts), so
 * heap readings after `gc()` are comparable; this test asserts on its report:
 * the hub, the server, the memory broker and the presence store hold nothing
 * for the 500 channels used, and the heap grew by a bounded amount.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const CHILD = fileURLToPath(new URL('./channels-leak-child.ts', import.meta.url));
const CYCLES = 500;
/** Whole-run bound for the child, in ms (the cycles themselves take a few seconds). */
const CHILD_TIMEOUT_MS = 45_000;
/**
 * Heap growth allowed after 500 cycles. Measured: about 1 MB, levelling off
 * (JIT and hash-table slack); a leaked session (WebSocket, socket, parser,
 * subscriptions) costs tens of KB each, so a per-connection leak lands far above.
 */
const MAX_HEAP_GROWTH = 3 * 1024 * 1024;

function runChild(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', CHILD], {
      env: { ...process.env, LEAK_CYCLES: String(CYCLES), LEAK_BUDGET_MS: '30000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`leak child did not finish within ${CHILD_TIMEOUT_MS} ms\n${stderr}`));
    }, CHILD_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test(`${CYCLES} connect → auth → subscribe ×3 (+ pattern, presence) → publish → close/terminate cycles leave nothing behind`, async () => {
  const { code, stdout, stderr } = await runChild();
  const line = stdout.trim().split('\n').at(-1) ?? '';
  let report: Record<string, any>;
  try {
    report = JSON.parse(line);
  } catch {
    assert.fail(`no report from the child (exit ${code}):\n${stdout}\n${stderr}`);
  }
  assert.equal(report.error, null, report.error);
  assert.equal(code, 0, stderr);
  assert.equal(report.cycles, CYCLES);
  // The hub
  assert.equal(report.sessions, 0, 'hub.sessions');
  assert.equal(report.subscriptionCount, 0, 'hub.subscriptionCount');
  assert.deepEqual(report.channelStats, [], 'hub.channelStats()');
  assert.equal(report.presenceBatches, 0, 'pending presence batches');
  // The server's connection bookkeeping
  assert.equal(report.sockets, 0);
  assert.equal(report.connectionCount, 0);
  assert.equal(report.connectionsPerIp, 0);
  // The broker and the presence store
  assert.deepEqual(report.broker, { channels: 0, publications: 0, idempotencyKeys: 0, subscriptions: 0, patterns: 0 });
  assert.equal(report.presenceChannels, 0);
  // The heap
  const growth = report.heapAfter - report.heapBefore;
  assert.ok(growth < MAX_HEAP_GROWTH, `heap grew by ${(growth / 1024).toFixed(0)} KiB over ${CYCLES} cycles (bound ${MAX_HEAP_GROWTH / 1024} KiB)`);
});
