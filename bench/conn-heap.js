#!/usr/bin/env node
// What one idle connection keeps in the heap, and what one heartbeat
// ping-pong allocates, in a Switchboard library server (docs/benchmarks.md,
// "Cost per connection"). After `npm run build`:
//
//   node bench/conn-heap.js snapshot   heap snapshots (after gc()) with none and
//                                      BENCH_HEAP_COUNT (3000) idle connections:
//                                      self size added per connection, by kind of object
//   node bench/conn-heap.js alloc      BENCH_HEAP_COUNT (2000) connections, heartbeat 1 s;
//                                      V8's sampling heap profiler (node:inspector, 128 B,
//                                      objects collected by GCs included) for 5 s:
//                                      bytes allocated per ping-pong, by allocation site
//
// BENCH_HEAP_HEARTBEAT=1 turns the heartbeat on in `snapshot` (three rounds
// before the second snapshot). The clients are raw-TCP WebSockets
// (bench/lib/raw-ws.js) that answer pings, in this process; the server is a
// child started with --expose-gc (for the snapshots only), killed at the end.
import { fork } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { RawWebSocket } from './lib/raw-ws.js';

const HERE = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(HERE), '..');
const mode = process.argv[2];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (process.argv[3] === '--server') await server(mode);
else if (mode === 'snapshot' || mode === 'alloc') await main(mode);
else {
  console.error('usage: node bench/conn-heap.js snapshot|alloc');
  process.exit(2);
}

async function main(mode) {
  const count = Number(process.env.BENCH_HEAP_COUNT || (mode === 'snapshot' ? 3000 : 2000));
  const heartbeat = mode === 'alloc' || process.env.BENCH_HEAP_HEARTBEAT === '1';
  const child = fork(HERE, [mode, '--server'], { execArgv: ['--expose-gc'], env: { ...process.env, BENCH_HEAP_HB: heartbeat ? '1' : '' } });
  const next = () => new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`server exited (${code})`)));
  });
  const conns = [];
  try {
    const { port } = await next();
    let opened = 0;
    const handler = { onOpen: () => opened++, onMessage() {}, onClose() {} };
    const open = async (n) => {
      opened = 0;
      for (let i = 0; i < n; i++) {
        conns.push(new RawWebSocket({ host: '127.0.0.1', port, path: '/', localAddress: `127.0.0.${1 + (i % 3)}` }, handler, i));
        if (i % 100 === 99) await sleep(10);
      }
      const deadline = Date.now() + 60_000;
      while (opened < n) {
        if (Date.now() > deadline) throw new Error(`${opened} of ${n} connections opened`);
        await sleep(50);
      }
    };
    // Warm-up: code compiled and modules loaded before the first snapshot.
    await open(300);
    for (const c of conns.splice(0)) c.destroy();
    await sleep(1000);
    child.send('first');
    await next();
    await open(count);
    await sleep(heartbeat ? 3500 : 1500);
    child.send('second');
    const { report } = await next();
    console.log(`${new Date().toISOString()}, Node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}\n${report}`);
  } finally {
    for (const c of conns) c.destroy();
    child.kill('SIGKILL');
  }
}

async function server(mode) {
  const { WebSocketServer } = await import(path.join(ROOT, 'dist', 'index.js'));
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', backlog: 4096, heartbeat: process.env.BENCH_HEAP_HB ? { interval: 1000, timeout: 1000 } : undefined });
  let open = 0;
  wss.on('connection', (ws) => {
    open++;
    ws.on('close', () => open--);
  });
  await new Promise((resolve) => wss.once('listening', resolve));
  process.send({ port: wss.address().port });
  let first = null;
  let session = null;
  process.on('message', async (msg) => {
    if (mode === 'snapshot') {
      globalThis.gc();
      globalThis.gc();
      const s = snapshotSizes();
      if (msg === 'first') {
        first = s;
        process.send({});
        return;
      }
      const rows = [];
      for (const [k, [c, b]] of s.byKind) {
        const [c0, b0] = first.byKind.get(k) ?? [0, 0];
        if (b !== b0) rows.push([k, (c - c0) / open, (b - b0) / open]);
      }
      rows.sort((x, y) => y[2] - x[2]);
      const lines = [`${open} idle connections${process.env.BENCH_HEAP_HB ? ' (heartbeat 1 s, 3 rounds)' : ''}: heap self size ${((s.total - first.total) / open).toFixed(0)} B per connection`];
      for (const [k, c, b] of rows.slice(0, 24)) lines.push(`${b.toFixed(1).padStart(8)} B  ${c.toFixed(2).padStart(6)} objects  ${k}`);
      process.send({ report: lines.join('\n') });
    } else if (msg === 'first') {
      process.send({});
    } else {
      const { Session } = await import('node:inspector/promises');
      session = new Session();
      session.connect();
      await session.post('HeapProfiler.startSampling', { samplingInterval: 128, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      const seconds = 5;
      await sleep(seconds * 1000);
      const { profile } = await session.post('HeapProfiler.stopSampling');
      const pings = open * seconds; // heartbeat 1 s: one ping-pong per connection per second
      const sites = new Map();
      let total = 0;
      const walk = (node, stack) => {
        const f = node.callFrame;
        const name = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber}`;
        total += node.selfSize;
        if (node.selfSize > 0) {
          const key = [name, ...stack.slice().reverse()].join(' <- ');
          sites.set(key, (sites.get(key) ?? 0) + node.selfSize);
        }
        for (const c of node.children) walk(c, [...stack, name].slice(-4));
      };
      walk(profile.head, []);
      const lines = [`${open} connections, heartbeat 1 s, ${seconds} s sampled: ${(total / pings).toFixed(0)} B allocated per ping-pong`];
      for (const [k, b] of [...sites].sort((x, y) => y[1] - x[1]).slice(0, 12)) lines.push(`${(b / pings).toFixed(1).padStart(8)} B  ${k}`);
      process.send({ report: lines.join('\n') });
    }
  });
}

/** Self sizes in a heap snapshot of this process, by (node type, constructor name). */
function snapshotSizes() {
  const file = v8.writeHeapSnapshot(path.join(os.tmpdir(), `sb-conn-heap-${process.pid}-${Date.now()}.heapsnapshot`));
  const snap = JSON.parse(readFileSync(file, 'utf8'));
  rmSync(file);
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const n = fields.length;
  const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const byKind = new Map();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += n) {
    const type = types[snap.nodes[i + iType]];
    let name = snap.strings[snap.nodes[i + iName]];
    if (type.includes('string')) name = '(string)';
    else if (type === 'code') name = '(code)';
    const key = `${type}: ${name.slice(0, 60)}`;
    const size = snap.nodes[i + iSize];
    total += size;
    const a = byKind.get(key) ?? [0, 0];
    a[0]++;
    a[1] += size;
    byKind.set(key, a);
  }
  return { byKind, total };
}
