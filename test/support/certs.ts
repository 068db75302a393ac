/**
 * A self-signed certificate for localhost / 127.0.0.1 / ::1, made at test
 * time with the `openssl` binary (a test fails, never skips, without it).
 * Used by the HTTP/2 tests (node:http2, HAProxy, Chromium, Python's h2).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TestCertificate {
  cert: Buffer;
  key: Buffer;
  /** Files of the pair, and `combined.pem` (cert then key, as HAProxy's `crt` wants it). */
  certFile: string;
  keyFile: string;
  combinedFile: string;
  dir: string;
  /** Remove the files. */
  remove(): void;
}

export function makeTestCertificate(): TestCertificate {
  const dir = mkdtempSync(path.join(tmpdir(), 'switchboard-cert-'));
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
    ],
    { cwd: dir, stdio: 'pipe', timeout: 30_000 },
  );
  const cert = readFileSync(path.join(dir, 'cert.pem'));
  const key = readFileSync(path.join(dir, 'key.pem'));
  const combinedFile = path.join(dir, 'combined.pem');
  execFileSync('sh', ['-c', 'cat cert.pem key.pem > combined.pem'], { cwd: dir });
  return {
    cert,
    key,
    certFile: path.join(dir, 'cert.pem'),
    keyFile: path.join(dir, 'key.pem'),
    combinedFile,
    dir,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
