/**
 * The admin UI (`admin.enabled`), under `admin.path` (default `/admin`):
 *
 * - `GET  <path>/login`   the login form; `POST <path>/login` (form field
 *   `password`: the admin password or the API key) sets the session cookie
 *   and redirects to `<path>/`; a wrong one answers 401 with the form and a
 *   message, too many attempts from one address 429 (`admin.loginRatePerIp`).
 * - `GET  <path>/`        the console page (web/admin/index.html), or a
 *   redirect to the login form without a valid session.
 * - `POST <path>/logout`  ends the session (cookie cleared, revoked here).
 * - `GET  <path>/assets/<file>` the page's scripts and styles (public).
 * - `<path>/api/...`      JSON: `overview`, `connections` (every node's),
 *   `channels`, `channel` (presence and last history), and the actions
 *   `publish`, `disconnect` (a user, on every node), `close` (a connection,
 *   on its node: realtime/cluster-ops.ts). 401 without a valid
 *   session; an action also needs the session's CSRF token in
 *   `X-CSRF-Token` and, when the browser sends `Origin`, this server's origin
 *   (403 otherwise).
 *
 * The actions take the HTTP API's code paths (http-api.ts); the metrics are
 * the dashboard feed's snapshots (dashboard-feed.ts). The session cookie is
 * described in admin-session.ts. Every login, failed login, logout and
 * action is logged at info (warn for refusals) with the client's address.
 */
import type http from 'node:http';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import type { Broker, PresenceStore } from '../brokers/broker.js';
import { parseCookie } from '../realtime/auth.js';
import type { Hub } from '../realtime/hub.js';
import type { ClusterOps } from '../realtime/cluster-ops.js';
import type { Logger } from '../realtime/transport.js';
import { InvalidDataError } from '../wire/data.js';
import { isLoopback } from './client-address.js';
import { ADMIN_COOKIE, AdminSessions, type AdminSession } from './admin-session.js';
import { resolveNamespace, type RealtimeConfig } from './config/index.js';
import { createSnapshotter, DASHBOARD_CHANNEL, type DashboardSnapshot } from './dashboard-feed.js';
import { channelPresence, closeRequest, disconnectRequest, historyRequest, nodeOp, publishRequest } from './http-api.js';
import { expectMethod, HttpError, optionalInt, readBody, readJson, requireChannelParam, sendJson, sendText } from './http-util.js';
import { KeyedRateLimiter } from '../realtime/rate-limit.js';
import type { Metrics } from './metrics.js';
import { PACKAGE_ROOT, serveStaticFile } from './static-pages.js';

/** What the admin UI needs of the server (a `RealtimeServer` passes its parts). */
export interface AdminHost {
  config: RealtimeConfig;
  nodeId: string;
  hub: Hub;
  /** Disconnects and closes on whichever node holds the connections. */
  ops: ClusterOps;
  broker: Broker;
  presence: PresenceStore;
  metrics: Metrics;
  logger: Logger;
  /** The client's address (trusted proxies applied), for the login rate limit and the log. */
  clientIp(req: http.IncomingMessage): string;
}

/** The files under `<path>/assets/`, by name (files of the package's `web/`). */
const ASSETS: Readonly<Record<string, string>> = {
  'admin.js': 'admin/admin.js',
  'admin.css': 'admin/admin.css',
  'metrics-view.js': 'metrics-view.js',
  'sparkline.js': 'sparkline.js',
  'style.css': 'style.css',
  'favicon.svg': 'favicon.svg',
};
const WEB = join(PACKAGE_ROOT, 'web');
/**
 * The login form and the console page: never cached (the console holds the
 * CSRF token), and `Referrer-Policy: same-origin` rather than the pages'
 * `no-referrer`, under which a browser sends `Origin: null` with a form's
 * POST, and the same-origin check could not tell our own forms from others.
 */
const PAGE_HEADERS = { 'Cache-Control': 'no-store', 'Referrer-Policy': 'same-origin' };
const FORM_LIMIT = 4096;
const API_BODY_LIMIT = 1024 * 1024;
/** Connections and channels listed at most per answer. */
const MAX_LISTED = 500;
/** A node whose last snapshot is older than this is not listed as live. */
const NODE_STALE_MS = 15_000;

export class AdminConsole {
  readonly path: string;
  private readonly sessions: AdminSessions;
  private readonly loginLimiter: KeyedRateLimiter;
  private readonly snapshot: () => Promise<DashboardSnapshot>;
  private readonly log: Logger;

  constructor(private readonly host: AdminHost) {
    const { admin, apiKey, auth } = host.config;
    this.path = admin.path;
    this.sessions = new AdminSessions({ password: admin.password, apiKey, hmacSecret: auth.hmacSecret }, admin.sessionTtlMs);
    this.loginLimiter = new KeyedRateLimiter(admin.loginRatePerIp.perSecond, admin.loginRatePerIp.burst);
    this.snapshot = createSnapshotter(host);
    this.log = host.logger.child({ component: 'admin' });
  }

  /** Serve `req` when its path is under the admin path; false otherwise. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): boolean {
    const p = url.pathname;
    if (p !== this.path && !p.startsWith(`${this.path}/`)) return false;
    const rest = p.slice(this.path.length);
    const api = rest.startsWith('/api/');
    if (!this.host.config.admin.allowInsecure && !(req.socket as TLSSocket).encrypted && !isLoopback(req.socket.localAddress)) {
      // Validation refuses a non-loopback `host` without TLS; this covers an app's own plain HTTP server (attach mode).
      this.log.warn({ ip: this.host.clientIp(req), local: req.socket.localAddress }, 'admin request refused: plain HTTP on a non-loopback interface');
      sendText(res, 403, 'the admin UI is not served over plain HTTP on a non-loopback interface: use TLS, or set admin.allowInsecure behind a TLS-terminating proxy\n');
      req.resume();
      return true;
    }
    this.route(req, res, url, rest).catch((err: unknown) => {
      if (res.headersSent) return;
      if (err instanceof HttpError || err instanceof InvalidDataError) {
        const headers = err instanceof HttpError ? err.headers : {};
        if (api) sendJson(res, err.status, { error: err.message }, headers);
        else sendText(res, err.status, `${err.message}\n`, undefined, headers);
        return;
      }
      this.log.error({ err: String(err), path: p }, 'admin request failed');
      if (api) sendJson(res, 503, { error: 'temporarily unavailable' });
      else sendText(res, 503, 'temporarily unavailable\n');
    });
    return true;
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse, url: URL, rest: string): Promise<void> {
    const method = req.method ?? 'GET';
    if (rest.startsWith('/assets/')) {
      const file = Object.prototype.hasOwnProperty.call(ASSETS, rest.slice(8)) ? ASSETS[rest.slice(8)] : undefined;
      if (file === undefined) throw new HttpError(404, 'not found');
      if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'use GET', { Allow: 'GET, HEAD' });
      await serveStaticFile(req, res, join(WEB, file), { head: method === 'HEAD' });
      return;
    }
    const session = this.sessions.verify(parseCookie(req.headers.cookie, ADMIN_COOKIE));
    switch (rest) {
      case '':
        redirect(res, `${this.path}/`);
        return;
      case '/':
        expectMethod(method, 'GET');
        if (session === null) redirect(res, `${this.path}/login`);
        else {
          await serveStaticFile(req, res, join(WEB, 'admin', 'index.html'), {
            replacements: { '%ADMIN_PATH%': this.path, '%CSRF_TOKEN%': this.sessions.csrfToken(session), '%NODE%': this.host.nodeId },
            headers: PAGE_HEADERS,
          });
        }
        return;
      case '/login':
        if (method === 'POST') return this.login(req, res);
        expectMethod(method, 'GET');
        if (session !== null) redirect(res, `${this.path}/`);
        else await this.loginPage(req, res, 200, '');
        return;
      case '/logout': {
        expectMethod(method, 'POST');
        if (session !== null) {
          const form = new URLSearchParams(await readBody(req, FORM_LIMIT));
          this.requireSameOrigin(req);
          if (!this.sessions.checkCsrf(session, form.get('csrf') ?? headerValue(req.headers['x-csrf-token']))) {
            throw new HttpError(403, 'logout refused: missing or wrong CSRF token');
          }
          this.sessions.revoke(session);
          this.log.info({ ip: this.host.clientIp(req) }, 'admin logout');
        } else req.resume();
        redirect(res, `${this.path}/login`, { 'Set-Cookie': this.cookie(req, '', 0) });
        return;
      }
    }
    if (rest.startsWith('/api/')) {
      if (session === null) throw new HttpError(401, `not logged in (or the session expired): log in at ${this.path}/login`);
      if (method !== 'GET' && method !== 'HEAD') {
        this.requireSameOrigin(req);
        if (!this.sessions.checkCsrf(session, headerValue(req.headers['x-csrf-token']))) throw new HttpError(403, 'missing or wrong X-CSRF-Token');
      }
      await this.api(req, res, url, rest.slice(5), method);
      return;
    }
    throw new HttpError(404, 'not found');
  }

  // ---- login -----------------------------------------------------------------------

  private async login(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const ip = this.host.clientIp(req);
    if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
      req.resume();
      throw new HttpError(415, 'expected a form (application/x-www-form-urlencoded)');
    }
    const form = new URLSearchParams(await readBody(req, FORM_LIMIT));
    this.requireSameOrigin(req);
    if (!this.loginLimiter.take(ip)) {
      this.log.warn({ ip }, 'admin login refused: too many attempts');
      const retry = Math.ceil(1 / this.host.config.admin.loginRatePerIp.perSecond);
      await this.loginPage(req, res, 429, `Too many login attempts from your address. Try again in ${retry} s.`, { 'Retry-After': String(retry) });
      return;
    }
    const given = form.get('password') ?? '';
    if (given === '' || !this.sessions.checkCredential(given)) {
      this.log.warn({ ip }, 'admin login failed: wrong password');
      await this.loginPage(req, res, 401, 'Wrong password or API key.');
      return;
    }
    const { value } = this.sessions.issue();
    this.log.info({ ip }, 'admin login');
    redirect(res, `${this.path}/`, { 'Set-Cookie': this.cookie(req, value, Math.floor(this.host.config.admin.sessionTtlMs / 1000)) });
  }

  private loginPage(req: http.IncomingMessage, res: http.ServerResponse, status: number, error: string, headers: Record<string, string> = {}): Promise<void> {
    return serveStaticFile(req, res, join(WEB, 'admin', 'login.html'), {
      status,
      replacements: { '%ADMIN_PATH%': this.path, '%ERROR%': error },
      headers: { ...PAGE_HEADERS, ...headers },
    });
  }

  /** The session cookie: HttpOnly, SameSite=Strict, Secure over TLS (or behind a proxy that says https), for the admin path only. */
  private cookie(req: http.IncomingMessage, value: string, maxAgeS: number): string {
    const secure = (req.socket as TLSSocket).encrypted === true || /^https\b/i.test(headerValue(req.headers['x-forwarded-proto']) ?? '');
    return `${ADMIN_COOKIE}=${value}; Path=${this.path}; Max-Age=${maxAgeS}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
  }

  /**
   * A browser's request from another site is refused (403): its `Origin`,
   * when it sends one, must name this server (the `Host` it asked for).
   */
  private requireSameOrigin(req: http.IncomingMessage): void {
    const origin = headerValue(req.headers.origin);
    if (origin === undefined) return;
    let host: string | null = null;
    try {
      host = origin === 'null' ? null : new URL(origin).host;
    } catch {
      host = null;
    }
    if (host === null || host !== req.headers.host) {
      this.log.warn({ ip: this.host.clientIp(req), origin }, 'admin request refused: cross-origin');
      throw new HttpError(403, `cross-origin request refused (Origin ${origin})`);
    }
  }

  // ---- JSON API ----------------------------------------------------------------------

  private async api(req: http.IncomingMessage, res: http.ServerResponse, url: URL, route: string, method: string): Promise<void> {
    const { hub } = this.host;
    switch (route) {
      case 'overview': {
        expectMethod(method, 'GET');
        const snapshot = await this.snapshot();
        sendJson(res, 200, { node: this.host.nodeId, snapshot, nodes: await this.nodes(snapshot) });
        return;
      }
      case 'connections': {
        expectMethod(method, 'GET');
        // Every node's (realtime/cluster-ops.ts): the newest first, each with its node.
        const list = await nodeOp(
          this.host.ops.listConnections({ user: url.searchParams.get('user') ?? undefined, limit: Math.min(optionalInt(url, 'limit') ?? MAX_LISTED, MAX_LISTED) }),
        );
        sendJson(res, 200, { node: this.host.ops.nodeId, ...list });
        return;
      }
      case 'channels': {
        expectMethod(method, 'GET');
        const channels = hub.channelStats().filter((c) => c.subscribers > 0);
        channels.sort((a, b) => b.subscribers - a.subscribers || (a.channel < b.channel ? -1 : 1));
        sendJson(res, 200, { node: this.host.nodeId, total: channels.length, channels: channels.slice(0, MAX_LISTED) });
        return;
      }
      case 'channel': {
        expectMethod(method, 'GET');
        const channel = requireChannelParam(url);
        const ns = resolveNamespace(this.host.config, channel);
        const [presence, history] = await Promise.all([
          channelPresence(this.host.config, this.host.presence, channel),
          ns.history.size > 0 ? historyRequest(this.host.broker, url, 20) : null,
        ]);
        sendJson(res, 200, {
          channel,
          namespace: { prefix: ns.prefix, presence: ns.presence, history: ns.history, clientPublish: ns.clientPublish },
          subscribers: hub.channelStats().find((c) => c.channel === channel)?.subscribers ?? 0,
          presence,
          history: history === null ? null : { publications: history.publications, position: history.position },
        });
        return;
      }
      case 'publish': {
        expectMethod(method, 'POST');
        const result = await publishRequest(hub, await readJson(req, API_BODY_LIMIT));
        this.action(req, 'publish', { channel: result.channel, offset: result.offset });
        sendJson(res, 200, result);
        return;
      }
      case 'disconnect': {
        expectMethod(method, 'POST');
        const result = await disconnectRequest(this.host.ops, await readJson(req, API_BODY_LIMIT));
        this.action(req, 'disconnect user', { user: result.user, disconnected: result.disconnected, nodes: result.nodes.length, unanswered: result.unanswered });
        sendJson(res, 200, result);
        return;
      }
      case 'close': {
        expectMethod(method, 'POST');
        const result = await closeRequest(this.host.ops, await readJson(req, API_BODY_LIMIT));
        this.action(req, 'close connection', { conn: result.id, node: result.node });
        sendJson(res, 200, result);
        return;
      }
      default:
        throw new HttpError(404, `no admin API route ${route}`);
    }
  }

  private action(req: http.IncomingMessage, action: string, fields: object): void {
    this.log.info({ ip: this.host.clientIp(req), action, ...fields }, 'admin action');
  }

  /**
   * Every node's numbers: this one's from `snapshot`, the others' from the
   * last snapshots their dashboard feeds published to `sys/dashboard` (its
   * history, shared through the broker), when that channel keeps history and
   * clients cannot publish to it (else the numbers could be forged).
   */
  private async nodes(own: DashboardSnapshot): Promise<NodeSummary[]> {
    const out: NodeSummary[] = [summary(own, true, 0)];
    const ns = resolveNamespace(this.host.config, DASHBOARD_CHANNEL);
    if (ns.clientPublish || ns.history.size === 0) return out;
    const { publications } = await this.host.broker.history(DASHBOARD_CHANNEL, { limit: 200 });
    const now = Date.now();
    const latest = new Map<string, DashboardSnapshot>();
    for (const pub of publications) {
      const s = pub.data as Partial<DashboardSnapshot> | null;
      if (s === null || typeof s !== 'object' || s.v !== 1 || typeof s.node !== 'string' || s.node === own.node || typeof s.time !== 'number') continue;
      if (now - s.time > NODE_STALE_MS) continue;
      const seen = latest.get(s.node);
      if (seen === undefined || seen.time < s.time) latest.set(s.node, s as DashboardSnapshot);
    }
    for (const s of latest.values()) out.push(summary(s, false, now - s.time));
    return out;
  }
}

/** One node's line in the overview. */
export interface NodeSummary {
  node: string;
  self: boolean;
  /** ms since its snapshot was taken. */
  ageMs: number;
  connections: DashboardSnapshot['connections'];
  subscriptions: number;
  rates: DashboardSnapshot['rates'];
  rssBytes: number;
}

function summary(s: DashboardSnapshot, self: boolean, ageMs: number): NodeSummary {
  return { node: s.node, self, ageMs, connections: s.connections, subscriptions: s.subscriptions, rates: s.rates, rssBytes: s.process?.rssBytes ?? 0 };
}

function redirect(res: http.ServerResponse, location: string, headers: Record<string, string> = {}): void {
  res.writeHead(303, { Location: location, 'Cache-Control': 'no-store', 'Content-Length': 0, ...headers });
  res.end();
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
