/** Small HTTP helpers for the server's routes (the JSON ones are shared with the fallback routes). */
import type http from 'node:http';
import { isValidChannel } from '../wire/channel.js';
import { HttpError } from '../carriers/http-json.js';

export { HttpError, sendJson, readBody, readJsonBody as readJson } from '../carriers/http-json.js';

export function sendText(res: http.ServerResponse, status: number, text: string, contentType = 'text/plain; charset=utf-8', headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

// ---- request checks (the HTTP API and the admin UI): each refusal a 400/405 HttpError with the reason ----

export function expectMethod(method: string, expected: string): void {
  if (method !== expected) throw new HttpError(405, `use ${expected}`, { Allow: expected });
}

export function asObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'body must be a JSON object');
  return body as Record<string, unknown>;
}

export function requireString(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (typeof v !== 'string' || v.length === 0 || v.length > 1024) throw new HttpError(400, `${field} must be a non-empty string`);
  return v;
}

export function requireChannel(body: Record<string, unknown>): string {
  const channel = requireString(body, 'channel');
  if (!isValidChannel(channel)) throw new HttpError(400, `invalid channel ${JSON.stringify(channel)}`);
  return channel;
}

export function requireChannelParam(url: URL): string {
  const channel = url.searchParams.get('channel');
  if (!channel || !isValidChannel(channel)) throw new HttpError(400, 'a valid channel query parameter is required');
  return channel;
}

export function optionalInt(url: URL, name: string): number | undefined {
  const v = url.searchParams.get(name);
  if (v === null) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new HttpError(400, `${name} must be an integer >= 0`);
  return n;
}
