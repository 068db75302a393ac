/**
 * The pages' file server (src/server/static-pages.ts) over a real HTTP
 * server: the routes, content types, ETag/304, the realtime path written
 * into HTML, GET/HEAD only, and no way out of the web folder.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createStaticPages, PACKAGE_ROOT } from '../../../src/server/static-pages.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, path: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // A raw path (no URL normalization on our side), as an attacker would send it.
    const req = http.request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('static pages', () => {
  let dir: string;
  let server: http.Server;
  let port: number;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-pages-'));
    const web = join(dir, 'web');
    mkdirSync(join(web, 'sub'), { recursive: true });
    writeFileSync(join(web, 'index.html'), '<meta name="switchboard-path" content="%SWITCHBOARD_PATH%"><p>chat</p>');
    writeFileSync(join(web, 'dashboard.html'), '<p>dashboard</p>');
    writeFileSync(join(web, 'app.js'), 'export const x = 1;\n');
    writeFileSync(join(web, 'style.css'), 'body{}');
    writeFileSync(join(web, 'sub', 'icon.svg'), '<svg/>');
    writeFileSync(join(web, '.secret.js'), 'secret');
    writeFileSync(join(web, 'notes.md'), 'not served');
    writeFileSync(join(dir, 'outside.js'), 'outside');
    writeFileSync(join(dir, 'client.js'), 'export class Client {}\n');
    const pages = createStaticPages({ webRoot: web, clientBundle: join(dir, 'client.js'), realtimePath: '/rt"<x>' });
    server = http.createServer((req, res) => {
      if (!pages(req, res)) res.writeHead(404, { 'X-Next': 'yes' }).end('next handler\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves / and /dashboard as HTML with the realtime path written in (escaped), no-cache and the security headers', async () => {
    const home = await request(port, '/?room=lobby&user=alice');
    assert.equal(home.status, 200);
    assert.equal(home.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(home.headers['cache-control'], 'no-cache');
    assert.equal(home.headers['x-content-type-options'], 'nosniff');
    assert.match(String(home.headers['content-security-policy']), /default-src 'self'/);
    assert.match(home.body, /content="\/rt&#34;&#60;x&#62;"/);
    const dashboard = await request(port, '/dashboard');
    assert.equal(dashboard.status, 200);
    assert.equal(dashboard.body, '<p>dashboard</p>');
  });

  it('serves /client.js from the bundle and web files with their content types', async () => {
    const client = await request(port, '/client.js');
    assert.equal(client.status, 200);
    assert.equal(client.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(client.body, 'export class Client {}\n');
    assert.equal((await request(port, '/app.js')).headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal((await request(port, '/style.css')).headers['content-type'], 'text/css; charset=utf-8');
    const icon = await request(port, '/sub/icon.svg');
    assert.equal(icon.status, 200);
    assert.equal(icon.headers['content-type'], 'image/svg+xml');
  });

  it('answers 304 to a matching If-None-Match, and HEAD without a body', async () => {
    const first = await request(port, '/app.js');
    const etag = String(first.headers.etag);
    assert.match(etag, /^"[\w-]+"$/);
    const again = await request(port, '/app.js', { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304);
    assert.equal(again.body, '');
    const head = await request(port, '/app.js', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal(Number(head.headers['content-length']), first.body.length);
  });

  it('404 for missing files of a served type; other types, dotfiles and unknown paths go to the next handler', async () => {
    const missing = await request(port, '/missing.js');
    assert.equal(missing.status, 404);
    assert.equal(missing.headers['x-next'], undefined);
    for (const path of ['/notes.md', '/.secret.js', '/healthz', '/api/publish', '/rt/session', '/sub/', '/a//app.js']) {
      const answer = await request(port, path);
      assert.equal(answer.status, 404, path);
      assert.equal(answer.headers['x-next'], 'yes', `${path} was not left to the next handler`);
    }
  });

  it('never leaves the web folder, whatever the encoding', async () => {
    for (const path of ['/../outside.js', '/%2e%2e/outside.js', '/.%2E/outside.js', '/sub/../../outside.js', '/..%2foutside.js', '/%2e%2e%2foutside.js', '/..%5coutside.js', '/x%00.js']) {
      const answer = await request(port, path);
      assert.equal(answer.status, 404, path);
      assert.doesNotMatch(answer.body, /outside/, path);
    }
  });

  it('answers 405 to other methods on the pages and leaves other paths to the next handler', async () => {
    const post = await request(port, '/', { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    assert.equal((await request(port, '/app.js', { method: 'POST' })).headers['x-next'], 'yes');
  });

  it('says how to build the bundle when dist/client.js is missing', async () => {
    const pages = createStaticPages({ webRoot: join(dir, 'web'), clientBundle: join(dir, 'nope.js') });
    const other = http.createServer((req, res) => {
      if (!pages(req, res)) res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const answer = await request((other.address() as AddressInfo).port, '/client.js');
      assert.equal(answer.status, 404);
      assert.match(answer.body, /npm run build/);
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });

  it('mounted under a path (the arena at /arena): its pages and folders only, nothing outside the mount, no /client.js', async () => {
    const root = join(dir, 'game');
    mkdirSync(join(root, 'web'), { recursive: true });
    mkdirSync(join(root, 'lib'), { recursive: true });
    writeFileSync(join(root, 'web', 'index.html'), '<meta content="%SWITCHBOARD_PATH%"><p>game</p>');
    writeFileSync(join(root, 'lib', 'codec.js'), 'export {};\n');
    writeFileSync(join(root, 'server.js'), 'not for browsers');
    const pages = createStaticPages({ webRoot: root, mountPath: '/arena', pages: { '/': 'web/index.html' }, folders: ['web', 'lib'], realtimePath: '/rt' });
    const other = http.createServer((req, res) => {
      if (!pages(req, res)) res.writeHead(404, { 'X-Next': 'yes' }).end();
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const p = (other.address() as AddressInfo).port;
    try {
      for (const path of ['/arena', '/arena/', '/arena?name=a']) {
        const page = await request(p, path);
        assert.equal(page.status, 200, path);
        assert.equal(page.body, '<meta content="/rt"><p>game</p>');
      }
      assert.equal((await request(p, '/arena/lib/codec.js')).headers['content-type'], 'text/javascript; charset=utf-8');
      assert.equal((await request(p, '/arena/web/index.html')).status, 200);
      // Outside its folders, outside the mount, or climbing out: left to the next handler.
      for (const path of ['/arena/server.js', '/arenax/lib/codec.js', '/lib/codec.js', '/client.js', '/arena/client.js', '/arena/lib/../server.js', '/arena/lib/%2e%2e/server.js', '/']) {
        assert.equal((await request(p, path)).headers['x-next'], 'yes', path);
      }
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });

  it('finds the package root from its own URL: web/ with the pages is there', () => {
    for (const f of ['index.html', 'dashboard.html', 'chat.js', 'dashboard.js', 'common.js', 'sparkline.js', 'style.css', 'favicon.svg']) {
      assert.ok(existsSync(join(PACKAGE_ROOT, 'web', f)), `web/${f} is missing`);
    }
  });
});
