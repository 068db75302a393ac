/**
 * The realtime server's TLS listener when HTTP/2 is on (`tls` set,
 * `http2.enabled`): one `http2.createSecureServer({ allowHTTP1: true })`, so
 * ALPN offers `h2,http/1.1` and HTTP/1.1 Upgrades and h2 extended CONNECTs
 * (RFC 8441) share the port. The h2 side: the session knobs of `http2` in
 * the configuration, a PING keep-alive per session, session counts for the
 * metrics, and the GOAWAY of the graceful shutdown.
 */
import http2 from 'node:http2';
import type { SecureContextOptions } from 'node:tls';
import type { Http2Config } from './config/index.js';

/** What the server reports about its h2 sessions (the metrics implement it). */
export interface Http2SessionObserver {
  sessionOpened(): void;
  sessionClosed(): void;
}

export interface Http2Listener {
  readonly server: http2.Http2SecureServer;
  /** Open h2 sessions. */
  readonly sessionCount: number;
  /**
   * GOAWAY on every session (streams still open finish; none start), then
   * destroy what is left after `timeoutMs`. Resolves when every session is gone.
   */
  closeSessions(timeoutMs: number): Promise<void>;
}

/**
 * Create the h2+HTTP/1.1 TLS server. `tls` are the TLS options (certificate,
 * key, versions) plus the HTTP/1.1 timeouts; `enableConnectProtocol` is
 * advertised because the realtime server always mounts its WebSocket endpoint.
 */
export function createHttp2Listener(
  config: Http2Config,
  tls: SecureContextOptions & { minVersion?: string; headersTimeout?: number; requestTimeout?: number; connectionsCheckingInterval?: number },
  handler: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  observer: Http2SessionObserver,
): Http2Listener {
  const { headersTimeout, requestTimeout, connectionsCheckingInterval, ...secure } = tls;
  const server = http2.createSecureServer(
    {
      ...(secure as http2.SecureServerOptions),
      allowHTTP1: true,
      maxSessionMemory: config.maxSessionMemory,
      settings: {
        enableConnectProtocol: true,
        maxConcurrentStreams: config.maxConcurrentStreams,
        initialWindowSize: config.initialWindowSize,
      },
    },
    handler,
  );
  // The HTTP/1.1 connections of allowHTTP1 go through node:http's parser, which reads these off the server.
  const h1 = server as unknown as { headersTimeout?: number; requestTimeout?: number; connectionsCheckingInterval?: number };
  if (headersTimeout !== undefined) h1.headersTimeout = headersTimeout;
  if (requestTimeout !== undefined) h1.requestTimeout = requestTimeout;
  if (connectionsCheckingInterval !== undefined) h1.connectionsCheckingInterval = connectionsCheckingInterval;

  const sessions = new Set<http2.ServerHttp2Session>();
  /** Sessions with a PING in flight: still there at the next tick means dead. */
  const awaitingPing = new Set<http2.ServerHttp2Session>();
  let pinger: NodeJS.Timeout | null = null;
  const pingAll = (): void => {
    for (const session of sessions) {
      if (awaitingPing.has(session)) {
        // No PING ack for a whole interval: the peer or the path is gone.
        session.destroy();
        continue;
      }
      if (session.closed || session.destroyed) continue;
      awaitingPing.add(session);
      try {
        session.ping((err) => {
          if (!err) awaitingPing.delete(session);
        });
      } catch {
        awaitingPing.delete(session);
      }
    }
  };

  server.on('session', (session) => {
    sessions.add(session);
    observer.sessionOpened();
    // Errors of one connection (reset, protocol error) end that session; they are not the process's.
    session.on('error', () => {});
    session.once('close', () => {
      sessions.delete(session);
      awaitingPing.delete(session);
      observer.sessionClosed();
      if (sessions.size === 0 && pinger) {
        clearInterval(pinger);
        pinger = null;
      }
    });
    if (config.pingIntervalMs > 0 && !pinger) {
      pinger = setInterval(pingAll, config.pingIntervalMs);
      pinger.unref();
    }
  });

  return {
    server,
    get sessionCount() {
      return sessions.size;
    },
    async closeSessions(timeoutMs: number): Promise<void> {
      if (pinger) clearInterval(pinger);
      pinger = null;
      const all = [...sessions];
      for (const s of all) if (!s.closed) s.close();
      const gone = Promise.all(all.map((s) => (s.destroyed ? null : new Promise((resolve) => s.once('close', resolve)))));
      const timer = setTimeout(() => {
        for (const s of all) s.destroy();
      }, timeoutMs);
      await gone;
      clearTimeout(timer);
    },
  };
}
