/**
 * The warm-up request, and what the client knows about the HTTP version that
 * carries its connection.
 *
 * A browser runs a WebSocket over HTTP/2 (RFC 8441) only on an h2 connection
 * it already has to the WebSocket's origin, whose SETTINGS allow extended
 * CONNECT (`SETTINGS_ENABLE_CONNECT_PROTOCOL`); it never opens a new
 * connection for a WebSocket over h2. So before a WebSocket attempt the
 * client makes one light `GET` to the WebSocket's origin (https for wss): the
 * browser opens (or reuses) an h2 connection there, and the WebSocket pools
 * onto it. The request is `no-cors` (a cross-origin server needs no CORS
 * headers; the answer is not read) and credentialed: browsers keep
 * uncredentialed requests on connections of their own, which a WebSocket
 * (always credentialed) does not share. Any answer will do (404 included);
 * a failure (network, CSP, timeout) only means no warm-up: the WebSocket is
 * opened anyway.
 *
 * A page cannot ask which protocol carries its WebSocket; Resource Timing
 * tells the warm-up request's (`nextHopProtocol`). The server's word (the
 * `http` field of the `auth` reply) is preferred when there is one.
 */
import { httpProtocolOf, type FetchLike, type HttpProtocol } from './transports/transport.js';
import { setTimer } from './timer.js';

/**
 * Who told the client `httpProtocol`: `'server'` (the `auth` reply: the
 * server saw the connection arrive), `'websocket'` (the WebSocket
 * implementation reported its handshake: `switchboard`'s own in Node),
 * `'warmup'` (inferred from the warm-up request's protocol: the connection a
 * browser WebSocket pools onto, when the server allows RFC 8441).
 */
export type HttpProtocolSource = 'server' | 'websocket' | 'warmup';

/** How long the warm-up may delay a WebSocket attempt, in ms (capped at half of `connectTimeoutMs`). */
export const WARMUP_TIMEOUT_MS = 3000;

/** Whether this looks like a browser (a page or a worker): where the warm-up is on by default. */
export function inBrowser(): boolean {
  const g = globalThis as { document?: unknown; WorkerGlobalScope?: unknown };
  return typeof g.document === 'object' || typeof g.WorkerGlobalScope === 'function';
}

/** The warm-up URL for a WebSocket URL: `path` on its origin, over https for wss (http for ws). */
export function warmupUrl(webSocketUrl: string, path: string): string | null {
  let u: URL;
  try {
    u = new URL(webSocketUrl);
  } catch {
    return null;
  }
  const scheme = u.protocol === 'wss:' || u.protocol === 'https:' ? 'https:' : u.protocol === 'ws:' || u.protocol === 'http:' ? 'http:' : null;
  if (scheme === null) return null;
  return new URL(path, `${scheme}//${u.host}`).href;
}

type EntryList = Array<{ nextHopProtocol?: string }>;

/** The Resource Timing entries for `url`, or null where the environment keeps none. */
function timingEntries(url: string): EntryList | null {
  const perf = (globalThis as { performance?: { getEntriesByName?(name: string, type?: string): EntryList } }).performance;
  return typeof perf?.getEntriesByName === 'function' ? perf.getEntriesByName(url, 'resource') : null;
}

/** How long after its answer the warm-up's Resource Timing entry is looked for, in ms (browsers add it a moment after the body). */
export const WARMUP_ENTRY_WAIT_MS = 2000;

/**
 * `GET url` (no-cors, credentialed, not cached), bounded by `timeoutMs`.
 * Resolves (never rejects) once it is answered, failed or timed out: the
 * WebSocket may open then. The protocol it went over arrives later, when
 * the environment says (Resource Timing; browsers add the entry a moment
 * after the body, and expose `nextHopProtocol` across origins only with
 * `Timing-Allow-Origin`, which Switchboard's health routes send):
 * `report.protocol` is called once with it, within {@link WARMUP_ENTRY_WAIT_MS}
 * (the search stops early once `report.wanted()` says no: the attempt is over).
 */
export async function warmUp(
  url: string,
  fetch: FetchLike,
  timeoutMs: number,
  report: { wanted(): boolean; protocol(protocol: HttpProtocol): void },
): Promise<void> {
  const Abort = (globalThis as { AbortController?: typeof AbortController }).AbortController;
  const controller = Abort ? new Abort() : null;
  const before = timingEntries(url)?.length ?? 0;
  let timer: ReturnType<typeof setTimer> | null = null;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimer(() => resolve('timeout'), timeoutMs);
  });
  const request = (async () => {
    const response = await fetch(url, { method: 'GET', mode: 'no-cors', credentials: 'include', cache: 'no-store', signal: controller?.signal });
    await response.text();
    return 'done' as const;
  })().catch(() => 'failed' as const);
  const outcome = await Promise.race([request, timeout]);
  if (timer) clearTimeout(timer);
  if (outcome !== 'done') {
    controller?.abort();
    return;
  }
  if (timingEntries(url) === null) return;
  // Look for this request's entry now and then, in the background.
  const deadline = Date.now() + WARMUP_ENTRY_WAIT_MS;
  const look = (): void => {
    if (!report.wanted()) return;
    const entries = timingEntries(url)!;
    if (entries.length > before) {
      const protocol = httpProtocolOf(entries[entries.length - 1]!.nextHopProtocol);
      if (protocol !== null) report.protocol(protocol);
      return;
    }
    if (Date.now() < deadline) setTimer(look, 25);
  };
  look();
}
