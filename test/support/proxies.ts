/**
 * nginx and HAProxy for tests, in front of real nodes: the shipped configs
 * (deploy/nginx/switchboard.conf, deploy/haproxy/haproxy.cfg) rendered with
 * the test's ports — only the listen port, the node list and file paths are
 * substituted, and a rendering that does not find what it substitutes throws,
 * so the file tested is the file shipped. Each proxy runs in the foreground
 * (nginx `-g 'daemon off;'`, haproxy `-db`) in a temp dir with its own pid,
 * logs and temp paths, on a free loopback port; never the system service.
 * Stopped by PID (SIGTERM, SIGKILL after a bound). Every wait bounded.
 *
 * Free of node:test (a helper module; the test registers the cleanup).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { accepts } from './child-server.js';
import { freePort } from './redis.js';
import { sleep, within } from './wait.js';

export const NGINX = process.env.SWITCHBOARD_NGINX ?? '/usr/sbin/nginx';
export const HAPROXY = process.env.SWITCHBOARD_HAPROXY ?? '/usr/sbin/haproxy';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const NGINX_CONF = join(ROOT, 'deploy/nginx/switchboard.conf');
export const HAPROXY_CFG = join(ROOT, 'deploy/haproxy/haproxy.cfg');

/** Replace `pattern` in `text`, which must match exactly `count` times (the shipped file changed otherwise). */
function substitute(text: string, pattern: RegExp, replace: (m: RegExpExecArray) => string, count: number, what: string): string {
  const global = new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`);
  let found = 0;
  const out = text.replace(global, (...args) => {
    found++;
    const m = args.slice(0, -2) as unknown as RegExpExecArray;
    return replace(m);
  });
  if (found !== count) throw new Error(`rendering the shipped config: expected ${count} × ${what} (${pattern}), found ${found}`);
  return out;
}

/**
 * Replace each group of consecutive node lines (`line` matches one, group 1
 * is everything before the address, group 2 the node number in the name if
 * any, group 3 everything after the address) with one line per port, built
 * from the group's first line.
 */
function renderNodeGroups(text: string, line: RegExp, ports: readonly number[], groups: number): string {
  const lines = text.split('\n');
  const out: string[] = [];
  let found = 0;
  for (let i = 0; i < lines.length; i++) {
    const m = line.exec(lines[i]!);
    if (!m) {
      out.push(lines[i]!);
      continue;
    }
    found++;
    while (i + 1 < lines.length && line.test(lines[i + 1]!)) i++;
    ports.forEach((port, k) => out.push(`${m[1]!.replace(/node\d+/g, `node${k + 1}`)}127.0.0.1:${port}${m[2]!.replace(/node\d+/g, `node${k + 1}`)}`));
  }
  if (found !== groups) throw new Error(`rendering the shipped config: expected ${groups} groups of node lines (${line}), found ${found}`);
  return out.join('\n');
}

/** deploy/nginx/switchboard.conf for nodes on `ports`, listening on 127.0.0.1:`port`, logging to `dir`. */
export function renderNginx(ports: readonly number[], port: number, dir: string): string {
  let conf = readFileSync(NGINX_CONF, 'utf8');
  conf = renderNodeGroups(conf, /^(\s*server )127\.0\.0\.1:\d+( .*;)$/, ports, 1);
  conf = substitute(conf, /^(\s*)listen \d+;$/m, (m) => `${m[1]}listen 127.0.0.1:${port};`, 1, 'listen');
  conf = substitute(conf, /access_log \S+ switchboard;/, () => `access_log ${join(dir, 'access.log')} switchboard;`, 1, 'access_log');
  return conf;
}

/** deploy/haproxy/haproxy.cfg for nodes on `ports`, bound to 127.0.0.1:`port`, its runtime socket at `socket`. */
export function renderHaproxy(ports: readonly number[], port: number, socket: string): string {
  let cfg = readFileSync(HAPROXY_CFG, 'utf8');
  cfg = renderNodeGroups(cfg, /^(\s*server node\d+ )127\.0\.0\.1:\d+(.*)$/, ports, 1);
  cfg = substitute(cfg, /^(\s*)bind :\d+$/m, (m) => `${m[1]}bind 127.0.0.1:${port}`, 1, 'bind');
  cfg = substitute(cfg, /stats socket \S+/, () => `stats socket ${socket}`, 1, 'stats socket');
  return cfg;
}


/** Processes still running: SIGKILLed if the test process exits without stopping them. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

export abstract class Proxy {
  readonly dir: string;
  port = 0;
  protected child: ChildProcess | undefined;
  #output = '';
  #exited: Promise<void> = Promise.resolve();

  protected constructor(readonly name: string) {
    this.dir = mkdtempSync(join(tmpdir(), `sb-${name}-`));
  }

  /** `ws://127.0.0.1:<port>/rt`. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}/rt`;
  }

  /** `http://127.0.0.1:<port>`. */
  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Its stdout and stderr (HAProxy logs there), the last 64 KiB. */
  get output(): string {
    return this.#output;
  }

  protected async launch(command: string, args: string[], timeoutMs = 10_000): Promise<void> {
    const child = spawn(command, args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    live.add(child);
    const keep = (chunk: Buffer): void => {
      this.#output = (this.#output + chunk.toString()).slice(-65_536);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    let exited = false;
    this.#exited = new Promise((resolve) =>
      child.once('exit', () => {
        exited = true;
        live.delete(child);
        resolve();
      }),
    );
    const deadline = Date.now() + timeoutMs;
    while (!(await accepts(this.port))) {
      if (exited) throw new Error(`${this.name} exited at start:\n${this.#output}`);
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`${this.name} did not listen within ${timeoutMs} ms:\n${this.#output}`);
      }
      await sleep(20);
    }
  }

  /** Stop by PID: SIGTERM, SIGKILL after `graceMs`; then remove the dir. */
  async stop(graceMs = 5000): Promise<void> {
    const child = this.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      try {
        await within(this.#exited, graceMs, `${this.name} (pid ${child.pid}) to exit after SIGTERM`);
      } catch {
        child.kill('SIGKILL');
        await within(this.#exited, 5000, `${this.name} (pid ${child.pid}) to exit after SIGKILL`);
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** nginx with deploy/nginx/switchboard.conf included in a minimal main config of its own. */
export class Nginx extends Proxy {
  private constructor() {
    super('nginx');
  }

  static async start(nodePorts: readonly number[]): Promise<Nginx> {
    const proxy = new Nginx();
    proxy.port = await freePort();
    const d = proxy.dir;
    for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(d, 'temp', sub), { recursive: true });
    writeFileSync(join(d, 'switchboard.conf'), renderNginx(nodePorts, proxy.port, d));
    // The main config a distribution would have (the shipped file goes in its http block), with every path in the temp dir.
    writeFileSync(
      join(d, 'nginx.conf'),
      [
        // As root, nginx would switch its workers to `nobody`, which may not enter this temp dir.
        ...(process.getuid?.() === 0 ? ['user root;'] : []),
        'worker_processes 2;',
        `pid ${join(d, 'nginx.pid')};`,
        // notice: the reload steps are logged (see takeDown).
        `error_log ${join(d, 'error.log')} notice;`,
        'events { worker_connections 1024; }',
        'http {',
        `  client_body_temp_path ${join(d, 'temp/client_body')};`,
        `  proxy_temp_path ${join(d, 'temp/proxy')};`,
        `  fastcgi_temp_path ${join(d, 'temp/fastcgi')};`,
        `  uwsgi_temp_path ${join(d, 'temp/uwsgi')};`,
        `  scgi_temp_path ${join(d, 'temp/scgi')};`,
        `  access_log ${join(d, 'access.log')};`,
        // A main config that compresses everything, event streams included: the shipped
        // session routes must still stream (gzip would hold the events back).
        '  gzip on;',
        '  gzip_types text/event-stream application/json;',
        '  gzip_min_length 1;',
        `  include ${join(d, 'switchboard.conf')};`,
        '}',
        '',
      ].join('\n'),
    );
    await proxy.launch(NGINX, ['-p', d, '-c', join(d, 'nginx.conf'), '-g', 'daemon off;']);
    return proxy;
  }

  /**
   * What the shipped file tells an operator to do to take a node out: mark
   * its line `down` in the upstream and reload (SIGHUP to the master);
   * `down = false` puts it back. Resolves once the old workers are shutting
   * down, so new connections meet the new configuration.
   */
  async setDown(nodePort: number, down: boolean, timeoutMs = 10_000): Promise<void> {
    const file = join(this.dir, 'switchboard.conf');
    const conf = readFileSync(file, 'utf8');
    const line = new RegExp(`^(\\s*server 127\\.0\\.0\\.1:${nodePort} .*?)( down)?;$`, 'gm');
    if ((conf.match(line) ?? []).length !== 1) throw new Error(`node ${nodePort} is not in the upstream once`);
    writeFileSync(file, conf.replace(line, down ? '$1 down;' : '$1;'));
    const before = this.errorLog().length;
    process.kill(this.pid!, 'SIGHUP');
    const deadline = Date.now() + timeoutMs;
    while (!/gracefully shutting down/.test(this.errorLog().slice(before))) {
      if (/\[emerg\]/.test(this.errorLog().slice(before))) throw new Error(`nginx refused the reload:\n${this.errorLog().slice(before)}`);
      if (Date.now() > deadline) throw new Error(`nginx did not reload within ${timeoutMs} ms:\n${this.errorLog().slice(before)}`);
      await sleep(20);
    }
  }

  /** The access log (the shipped `switchboard` format). */
  accessLog(): string {
    try {
      return readFileSync(join(this.dir, 'access.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** The error log, for failure messages. */
  errorLog(): string {
    try {
      return readFileSync(join(this.dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  }
}

/** HAProxy running deploy/haproxy/haproxy.cfg, with its runtime API on a unix socket in its temp dir. */
export class Haproxy extends Proxy {
  readonly socket: string;

  private constructor() {
    super('haproxy');
    this.socket = join(this.dir, 'admin.sock');
  }

  static async start(nodePorts: readonly number[]): Promise<Haproxy> {
    const proxy = new Haproxy();
    proxy.port = await freePort();
    const file = join(proxy.dir, 'haproxy.cfg');
    writeFileSync(file, renderHaproxy(nodePorts, proxy.port, proxy.socket));
    await proxy.launch(HAPROXY, ['-f', file, '-db']);
    return proxy;
  }

  /** One command on the runtime API (`show servers state`, `set server b/s state drain`, …); its answer. */
  runtime(command: string, ms = 5000): Promise<string> {
    return within(
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(this.socket);
        let answer = '';
        socket.on('connect', () => socket.end(`${command}\n`));
        socket.on('data', (c: Buffer) => (answer += c.toString()));
        socket.on('end', () => resolve(answer));
        socket.on('error', reject);
      }),
      ms,
      `haproxy runtime: ${command}`,
    );
  }

  /** `<backend>/<server>` → its operational state from `show servers state` (0 stopped, 2 running, …) and admin state (bit 0x8: drain). */
  async serverStates(backend: string): Promise<Map<string, { op: number; admin: number }>> {
    const text = await this.runtime(`show servers state ${backend}`);
    const states = new Map<string, { op: number; admin: number }>();
    // Fields: be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length > 7 && f[1] === backend && /^\d+$/.test(f[0]!)) states.set(f[3]!, { op: Number(f[5]), admin: Number(f[6]) });
    }
    return states;
  }
}

/**
 * HAProxy speaking RFC 8441 on both sides: a TLS front with ALPN h2,http/1.1
 * (certificate + key in one PEM, `crt`) and a TLS back end that talks h2 to
 * the node (`alpn h2`) and carries WebSockets as h2 extended CONNECTs
 * (`ws h2`): an HTTP/1.1 Upgrade in front becomes a CONNECT behind, and an h2
 * CONNECT in front stays one.
 */
export class HaproxyH2 extends Proxy {
  private constructor() {
    super('haproxy-h2');
  }

  static async start(nodePort: number, combinedPem: string): Promise<HaproxyH2> {
    const proxy = new HaproxyH2();
    proxy.port = await freePort();
    const file = join(proxy.dir, 'haproxy.cfg');
    writeFileSync(
      file,
      [
        'global',
        '  log stderr format raw local0 info',
        'defaults',
        '  mode http',
        '  log global',
        '  option httplog',
        '  timeout connect 5s',
        '  timeout client 30s',
        '  timeout server 30s',
        '  timeout tunnel 60s',
        'frontend fe',
        `  bind 127.0.0.1:${proxy.port} ssl crt ${combinedPem} alpn h2,http/1.1`,
        '  default_backend nodes',
        'backend nodes',
        `  server node1 127.0.0.1:${nodePort} ssl verify none alpn h2 ws h2`,
        '',
      ].join('\n'),
    );
    await proxy.launch(HAPROXY, ['-f', file, '-db']);
    return proxy;
  }
}
