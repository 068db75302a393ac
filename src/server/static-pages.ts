/**
 * The web pages `switchboard serve` shows: the chat demo at `/`, the live
 * dashboard at `/dashboard`, the browser SDK bundle at `/client.js`, and the
 * other files of the package's `web/` folder (scripts, styles, icon).
 *
 * A small, strict file server: GET and HEAD only, a fixed table of content
 * types (files of other types are not served), no dotfiles, no path that
 * leaves `web/` (`..`, encoded or not, backslashes, NUL), and `Cache-Control:
 * no-cache` with an ETag, so an edited page or a rebuilt SDK is picked up at
 * once while unchanged files cost a 304. Paths it does not serve are left to
 * the next handler (the realtime server's routes, then its 404).
 *
 * `web/` and `dist/client.js` are found relative to the package root (from
 * this module's URL), so they are there for `npx switchboard serve` as for a
 * checkout, whether this runs from `src/` (tsx) or `dist/`.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type http from 'node:http';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: this file is `<root>/src/server/static-pages.ts` or `<root>/dist/server/static-pages.js`. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface StaticPagesOptions {
  /** Folder with the pages. Default `<package>/web`. */
  webRoot?: string;
  /** The SDK bundle served at `/client.js`. Default `<package>/dist/client.js`. */
  clientBundle?: string;
  /** Path of the realtime WebSocket endpoint, written into the pages (`<meta name="switchboard-path">`). Default `/rt`. */
  realtimePath?: string;
  /**
   * Serve `webRoot` under this URL path instead of at `/` (e.g. `/arena`: `/arena/web/app.js`
   * is `<webRoot>/web/app.js`). A mounted handler does not serve `/client.js`. Default `/`.
   */
  mountPath?: string;
  /** Pages by URL path (relative to `mountPath`, e.g. `/`), to files of `webRoot`. Default: the demo pages. */
  pages?: Readonly<Record<string, string>>;
  /** Only files in these top-level folders of `webRoot` are served (besides `pages`). Default: all of it. */
  folders?: readonly string[];
}

/** Returns true when it answered the request, false to leave it to the next handler. */
export type StaticHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean;

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** Pages by URL path (files of `web/`). */
const PAGES: Readonly<Record<string, string>> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/dashboard': 'dashboard.html',
  '/dashboard/': 'dashboard.html',
  '/dashboard.html': 'dashboard.html',
};

/** Same origin only: the pages load nothing from elsewhere and talk only to this server. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy': "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
};

/** The placeholder in HTML files that becomes the realtime path. */
const PATH_PLACEHOLDER = '%SWITCHBOARD_PATH%';

export function createStaticPages(options: StaticPagesOptions = {}): StaticHandler {
  const webRoot = resolve(options.webRoot ?? join(PACKAGE_ROOT, 'web'));
  const clientBundle = resolve(options.clientBundle ?? join(PACKAGE_ROOT, 'dist', 'client.js'));
  const realtimePath = options.realtimePath ?? '/rt';
  const mount = (options.mountPath ?? '/').replace(/\/+$/, '');
  const pages = options.pages ?? PAGES;
  const folders = options.folders;

  /** The file for a URL path (relative to the mount), or null when it is not one of ours. */
  const fileFor = (pathname: string): string | null => {
    const page = pages[pathname];
    if (page) return join(webRoot, page);
    if (mount === '' && pathname === '/client.js') return clientBundle;
    if (mount === '' && pathname === '/client.js.map') return `${clientBundle}.map`;
    let decoded: string;
    try {
      decoded = decodeURIComponent(pathname);
    } catch {
      return null;
    }
    if (decoded.includes('\0') || decoded.includes('\\')) return null;
    const segments = decoded.split('/').slice(1);
    // No dotfiles, no `..`, no empty segments (`//x`, a trailing `/` of a folder).
    if (segments.some((s) => s === '' || s.startsWith('.'))) return null;
    // The admin UI's files are served by the admin UI (admin.ts), under its own path, or not at all.
    if (segments[0] === 'admin') return null;
    if (folders !== undefined && (segments.length < 2 || !folders.includes(segments[0]!))) return null;
    if (!(extname(decoded) in CONTENT_TYPES)) return null;
    const file = resolve(webRoot, ...segments);
    return file.startsWith(webRoot + sep) ? file : null;
  };

  return (req, res) => {
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      return false;
    }
    if (mount !== '') {
      // `/arena` itself is the mount's `/`; `/arenax` is not under it.
      if (pathname !== mount && !pathname.startsWith(`${mount}/`)) return false;
      pathname = pathname.slice(mount.length) || '/';
    }
    // The raw path, before URL normalization resolved any `..`: a request that climbs is refused, not rewritten.
    const raw = (req.url ?? '/').split('?')[0]!;
    if (/(^|\/)(\.|%2e){2}(\/|$)/i.test(raw)) return false;
    const file = fileFor(pathname);
    if (file === null) return false;
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      // The pages answer 405; any other path (a POST to /x.js) is left to the 404.
      if (!(pathname in pages) && !(mount === '' && pathname === '/client.js')) return false;
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('use GET or HEAD\n');
      return true;
    }
    void serveStaticFile(req, res, file, {
      head: method === 'HEAD',
      missing: file === clientBundle || file === `${clientBundle}.map` ? 'dist/client.js is missing: run `npm run build` to build the browser SDK\n' : undefined,
      replacements: { [PATH_PLACEHOLDER]: realtimePath },
    });
    return true;
  };
}

export interface StaticFileOptions {
  /** Answer HEAD: the headers only. */
  head?: boolean;
  /** The 404 text when the file is missing. Default `not found`. */
  missing?: string;
  /** In HTML files, each key (a placeholder) replaced by its value, HTML-escaped. */
  replacements?: Readonly<Record<string, string>>;
  /** Headers added to (or replacing) the defaults, e.g. `Cache-Control: no-store` for a page with a secret in it. */
  headers?: Readonly<Record<string, string>>;
  /** The status of the answer (a login page says 401). Default 200, the only one answered 304 on a matching ETag. */
  status?: number;
}

/**
 * One file of the package's pages with the security headers, `no-cache` and
 * an ETag (304 when it matches); 404 when it is missing. Also used by the
 * admin UI for its own files.
 */
export async function serveStaticFile(req: http.IncomingMessage, res: http.ServerResponse, file: string, options: StaticFileOptions = {}): Promise<void> {
  const type = CONTENT_TYPES[extname(file)] ?? 'application/octet-stream';
  let body: Buffer;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
    body = await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const missing = code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
    if (res.headersSent) return;
    const text = !missing ? 'cannot read the file\n' : (options.missing ?? 'not found\n');
    res.writeHead(missing ? 404 : 500, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' }).end(text);
    return;
  }
  if (type.startsWith('text/html') && options.replacements !== undefined) {
    let text = body.toString('utf8');
    for (const [placeholder, value] of Object.entries(options.replacements)) text = text.replaceAll(placeholder, escapeHtml(value));
    body = Buffer.from(text);
  }
  const etag = `"${createHash('sha1').update(body).digest('base64url').slice(0, 20)}"`;
  const headers: Record<string, string | number> = {
    'Content-Type': type,
    'Cache-Control': 'no-cache',
    ETag: etag,
    ...SECURITY_HEADERS,
    ...options.headers,
  };
  const status = options.status ?? 200;
  if (status === 200 && req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers).end();
    return;
  }
  headers['Content-Length'] = body.length;
  res.writeHead(status, headers);
  res.end(options.head ? undefined : body);
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
