/**
 * deploy/grafana/switchboard.json: valid JSON, a Grafana dashboard shape,
 * and every metric name its queries use is one that `/metrics` of a real
 * server exports (a renamed metric breaks this test, not a dashboard in
 * production). Also: every Switchboard metric has a panel.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import { test } from 'node:test';
import { createRealtimeServer } from '../../../src/server/realtime-server.js';
import { silentLogger } from '../../../src/realtime/transport.js';
import { makePki } from '../../support/tls.js';

const DASHBOARD = new URL('../../../deploy/grafana/switchboard.json', import.meta.url);

/** The metric names `/metrics` of a real server exports: each family, and a histogram's `_bucket`, `_sum`, `_count`. */
async function exportedNames(): Promise<{ names: Set<string>; families: Set<string> }> {
  // On TLS: the certificate's metrics are exported only by a server that serves TLS itself.
  const pki = makePki();
  const server = createRealtimeServer({
    logger: silentLogger,
    config: {
      host: '127.0.0.1',
      port: 0,
      auth: { hmacSecret: 'grafana-dashboard-test-secret-0123456789' },
      log: { level: 'silent' },
      tls: { cert: pki.serverA.cert, key: pki.serverA.key },
    },
  });
  try {
    const { port } = await server.listen();
    const res = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/metrics', servername: 'localhost', ca: pki.caPem, agent: false }, (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
        })
        .on('error', reject);
    });
    assert.equal(res.status, 200);
    const text = res.text;
    const names = new Set<string>();
    const families = new Set<string>();
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      const [, name, type] = m as unknown as [string, string, string];
      families.add(name);
      names.add(name);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
      if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
    }
    return { names, families };
  } finally {
    await server.close();
    pki.dispose();
  }
}

test('the Grafana dashboard is valid JSON and its queries use only metrics a real server exports', async () => {
  const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as {
    title: string;
    uid: string;
    panels: Array<{ title: string; gridPos: object; targets: Array<{ expr: string }> }>;
  };
  assert.equal(typeof dashboard.title, 'string');
  assert.equal(typeof dashboard.uid, 'string');
  assert.ok(dashboard.panels.length >= 10);
  const { names, families } = await exportedNames();
  const used = new Set<string>();
  for (const panel of dashboard.panels) {
    assert.ok(panel.targets.length > 0, `${panel.title}: no query`);
    assert.equal(typeof panel.gridPos, 'object');
    for (const { expr } of panel.targets) {
      const metrics = expr.match(/\bswitchboard_[a-z0-9_]+/g) ?? [];
      assert.ok(metrics.length > 0, `${panel.title}: ${expr} names no switchboard metric`);
      for (const name of metrics) {
        assert.ok(names.has(name), `${panel.title}: ${name} is not exported by /metrics`);
        used.add(name.replace(/_(bucket|sum|count)$/, (s) => (families.has(name) ? s : '')));
      }
    }
  }
  // Switchboard's own metrics (not prom-client's process_/nodejs_ defaults) each have a panel.
  const own = [...families].filter((f) => !/^switchboard_(process|nodejs)_/.test(f));
  assert.ok(own.length >= 13, own.join(' '));
  for (const family of own) assert.ok(used.has(family), `${family} has no panel`);
  // The process panels: CPU, RSS, event-loop lag.
  for (const name of ['switchboard_process_cpu_seconds_total', 'switchboard_process_resident_memory_bytes', 'switchboard_nodejs_eventloop_lag_seconds']) {
    assert.ok(used.has(name), `${name} has no panel`);
  }
});
