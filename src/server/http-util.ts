/** Small HTTP helpers for the server's routes (the JSON ones are shared with the fallback routes). */
import type http from 'node:http';

export { HttpError, sendJson, readJsonBody as readJson } from '../carriers/http-json.js';

export function sendText(res: http.ServerResponse, status: number, text: string, contentType = 'text/plain; charset=utf-8', headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
