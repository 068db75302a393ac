/**
 * Certificates for the TLS tests, made at test time with the `openssl`
 * binary through the same code as `switchboard cert` (src/cli/cert.ts): a
 * CA, two server leaves for localhost/127.0.0.1/::1 (to swap on reloads), a
 * client certificate it signs, and a second CA with a client certificate the
 * first does not trust. The test fails, never skips, when openssl is missing.
 * Plus a raw TLS handshake that reports what the server presented.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { createCertificateAuthority, DEV_HOSTS, issueCertificate, type KeyPair } from '../../src/cli/cert.js';
import { within } from './wait.js';

export interface Pki {
  dir: string;
  ca: KeyPair;
  /** Two server certificates for the same hosts, different keys. */
  serverA: KeyPair;
  serverB: KeyPair;
  /** A client certificate signed by `ca` (CN=alice). */
  client: KeyPair;
  /** A client certificate signed by another CA (CN=mallory). */
  untrustedClient: KeyPair;
  /** PEM bytes of `ca.cert`. */
  caPem: Buffer;
  /** Remove the directory. */
  dispose(): void;
}

export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-pki-'));
  const ca = createCertificateAuthority(dir, { commonName: 'Switchboard test CA' });
  const other = createCertificateAuthority(dir, { name: 'other-ca', commonName: 'Another CA' });
  return {
    dir,
    ca,
    serverA: issueCertificate(ca, dir, { name: 'server-a', hosts: DEV_HOSTS, days: 30 }),
    serverB: issueCertificate(ca, dir, { name: 'server-b', hosts: DEV_HOSTS, days: 60 }),
    client: issueCertificate(ca, dir, { name: 'alice', commonName: 'alice', usage: 'client', days: 30 }),
    untrustedClient: issueCertificate(other, dir, { name: 'mallory', commonName: 'mallory', usage: 'client', days: 30 }),
    caPem: readFileSync(ca.cert),
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** What one TLS handshake to the server showed. */
export interface Handshake {
  /** SHA-256 fingerprint of the server's certificate. */
  fingerprint: string;
  protocol: string | null;
}

/**
 * One TLS handshake to 127.0.0.1:`port` (`servername` localhost, trusting
 * `ca`), then closed; rejects with the TLS error (a refused version, an
 * alert) or after `ms`.
 */
export function handshake(port: number, options: tls.ConnectionOptions = {}, ms = 5000): Promise<Handshake> {
  return within(
    new Promise<Handshake>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...options }, () => {
        const result = { fingerprint: socket.getPeerX509Certificate()?.fingerprint256 ?? '', protocol: socket.getProtocol() };
        socket.destroy();
        resolve(result);
      });
      socket.once('error', (err) => {
        socket.destroy();
        reject(err);
      });
    }),
    ms,
    `a TLS handshake with 127.0.0.1:${port}`,
  );
}

/** The SHA-256 fingerprint of a PEM certificate file (its first certificate). */
export function fingerprintOf(certFile: string): string {
  return new X509Certificate(readFileSync(certFile)).fingerprint256;
}
