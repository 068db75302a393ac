/**
 * HTTP helpers for the fallback routes and the server's own routes: JSON
 * answers, a bounded JSON body reader and an error that carries its status.
 * They live here because `carriers/` sits below `server/` in the layers;
 * `server/http-util.ts` re-exports them.
 */
import type http from 'node:http';

/** A refusal with an HTTP status; answered as `{"error": message}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * What the session routes answer through: the request's own
 * `http.ServerResponse`, or — for a request another node took — a
 * `RelayedResponse` (session-relay.ts) that carries the answer back to it
 * through the broker.
 */
export interface ResponseLike {
  writeHead(status: number, headers?: Record<string, string | number>): unknown;
  write(chunk: string): boolean;
  end(chunk?: string): unknown;
  destroy(): unknown;
  /** Bytes written and not yet taken by the network. */
  readonly writableLength: number;
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  on(event: 'close' | 'drain' | 'error', listener: (...args: any[]) => void): unknown;
}

/** A JSON answer, never cached. */
export function sendJson(res: ResponseLike, status: number, body: unknown, headers: Record<string, string> = {}): void {
  writeJsonText(res, status, JSON.stringify(body), headers);
}

/** A JSON answer whose text is already encoded (poll answers are built from pre-encoded messages). */
export function writeJsonText(res: ResponseLike, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** An empty answer (204). */
export function sendNoContent(res: ResponseLike, headers: Record<string, string> = {}): void {
  res.writeHead(204, { 'Cache-Control': 'no-store', ...headers });
  res.end();
}

/**
 * Read a JSON body of at most `limit` bytes: 415 when it is not declared as
 * `application/json`, 413 over the limit (declared or counted), 400 when it
 * does not parse. A body a framework parsed already (Express's
 * `express.json()`: `req.body` on a spent stream) is taken as is.
 */
export function readJsonBody(req: http.IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const type = req.headers['content-type'] ?? '';
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      req.resume();
      reject(new HttpError(415, 'expected Content-Type: application/json'));
      return;
    }
    const parsed = (req as { body?: unknown }).body;
    if (parsed !== undefined && req.readableEnded) {
      resolve(parsed);
      return;
    }
    readBody(req, limit).then((text) => {
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new HttpError(400, 'body is not valid JSON'));
      }
    }, reject);
  });
}

/** Read a body of at most `limit` bytes as UTF-8 text: 413 over the limit (declared or counted). */
export function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      reject(new HttpError(413, `body over ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(new HttpError(413, `body over ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (failed) return;
      resolve(Buffer.concat(chunks, size).toString('utf8'));
    });
    req.on('error', (err) => {
      if (failed) return;
      failed = true;
      reject(err);
    });
  });
}
