/**
 * TLS for the standalone server (`tls` in the configuration): reading and
 * checking the certificate chain, key and client CA; the options of the TLS
 * server made from them (the same object for `https.createServer` and
 * `http2.createSecureServer`: both are `tls.Server`s); the warnings at start
 * (expiry within 14 days, a certificate that does not cover the host); the
 * peer certificate of a connection, for auth; and the reload of the
 * certificate without dropping a connection (`CertificateReloader`: on
 * SIGHUP, `RealtimeServer#reloadCertificates()`, and when the files change).
 *
 * A reload builds a new secure context and hands it to
 * `tls.Server#setSecureContext()`: handshakes from then on use it; open
 * connections keep the session they negotiated. A new pair is checked before
 * it replaces the old one (parseable, the key matches the certificate, not
 * expired); a pair that fails keeps the old one, with a log line and
 * `switchboard_tls_reloads_total{result="failure"}`.
 *
 * ALPN is the server's business (which protocols it speaks), not this file's.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import tls from 'node:tls';
import type { ClientCertificate } from '../realtime/auth.js';
import type { Logger } from '../realtime/transport.js';
import type { TlsConfig } from './config/defaults.js';

/** A certificate that expires within this many days is warned about at start (and at each reload). */
export const EXPIRY_WARNING_DAYS = 14;
const DAY_MS = 86_400_000;

/** The files of `tls`, read and checked: what a secure context is made of. */
export interface TlsMaterial {
  /** The certificate chain as read (PEM), leaf first. */
  readonly cert: Buffer;
  readonly key: Buffer;
  /** CAs that verify client certificates (PEM), when `tls.ca` is set. */
  readonly ca?: Buffer;
  /** The leaf: the chain's first certificate, the one the key belongs to. */
  readonly leaf: X509Certificate;
  /** Certificates in the chain, the leaf included. */
  readonly chainLength: number;
}

/** A `tls` file that cannot be used; `key` names the configuration key at fault (`cert`, `key`, `ca`). */
export class TlsMaterialError extends Error {
  override readonly name = 'TlsMaterialError';
  readonly code = 'SB_ERR_TLS';
  constructor(
    readonly key: 'cert' | 'key' | 'ca' | 'passphrase',
    message: string,
  ) {
    super(message);
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Read `tls.cert`, `tls.key` (and `tls.ca`) and check them: each
 * certificate of the chain and of the CA bundle parses; the key parses
 * (decrypted with `passphrase` when it is encrypted) and belongs to the
 * leaf; OpenSSL accepts the whole as a secure context. Throws a
 * {@link TlsMaterialError} naming the key and the reason. Expiry is not an
 * error here (see {@link certificateWarnings}; a reload refuses an expired one).
 */
export function readTlsMaterial(config: Pick<TlsConfig, 'cert' | 'key' | 'ca' | 'passphrase'>): TlsMaterial {
  const cert = readTlsFile('cert', config.cert);
  const key = readTlsFile('key', config.key);
  const ca = config.ca === undefined ? undefined : readTlsFile('ca', config.ca);
  const chain = parseCertificates('cert', config.cert, cert);
  if (ca !== undefined) parseCertificates('ca', config.ca!, ca);
  const leaf = chain[0]!;
  // PKCS#8 `ENCRYPTED PRIVATE KEY`, or a traditional PEM with `Proc-Type: 4,ENCRYPTED`.
  const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/.test(key.toString('latin1'));
  if (encrypted && config.passphrase === undefined) {
    throw new TlsMaterialError('passphrase', `${config.key} is encrypted: set tls.passphrase (SWITCHBOARD_TLS_PASSPHRASE)`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key, passphrase: config.passphrase });
  } catch (err) {
    if (encrypted) throw new TlsMaterialError('passphrase', `cannot decrypt ${config.key} with tls.passphrase (wrong passphrase?)`);
    throw new TlsMaterialError('key', `${config.key}: not a private key in PEM (${(err as Error).message})`);
  }
  if (privateKey.type !== 'private') throw new TlsMaterialError('key', `${config.key}: not a private key`);
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsMaterialError('key', `${config.key} does not match the certificate ${config.cert} (${describeCertificate(leaf)}): the key of another certificate?`);
  }
  try {
    tls.createSecureContext({ cert, key, ca, passphrase: config.passphrase });
  } catch (err) {
    throw new TlsMaterialError('cert', `${config.cert} with ${config.key}: OpenSSL refuses them (${(err as Error).message})`);
  }
  return { cert, key, ca, leaf, chainLength: chain.length };
}

function readTlsFile(which: 'cert' | 'key' | 'ca', file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new TlsMaterialError(which, `cannot read file ${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

function parseCertificates(which: 'cert' | 'ca', file: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new TlsMaterialError(which, `${file}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new TlsMaterialError(which, `${file}: certificate ${i + 1} does not parse (${(err as Error).message})`);
    }
  });
}

/**
 * The secure-context part of the server's options (certificate, key, CA,
 * passphrase, minimum version): what `setSecureContext()` takes on a reload.
 */
export function secureContextOptions(config: TlsConfig, material: TlsMaterial): tls.SecureContextOptions {
  return {
    cert: material.cert,
    key: material.key,
    ...(material.ca !== undefined ? { ca: material.ca } : {}),
    ...(config.passphrase !== undefined ? { passphrase: config.passphrase } : {}),
    minVersion: config.minVersion,
  };
}

/**
 * The options of the TLS server: {@link secureContextOptions} plus the
 * client-certificate policy (`request`: asked for, verified against `ca`, a
 * connection without one or with an unverified one still admitted;
 * `require`: the handshake fails without a verified one). Pass them to
 * `https.createServer` or `http2.createSecureServer` (ALPN is added there).
 */
export function tlsServerOptions(config: TlsConfig, material: TlsMaterial): tls.TlsOptions {
  return {
    ...secureContextOptions(config, material),
    requestCert: config.clientCertificates !== 'off',
    rejectUnauthorized: config.clientCertificates === 'require',
  };
}

/** `CN=…, valid until …` (for log lines). */
export function describeCertificate(cert: X509Certificate): string {
  return `${cert.subject.replace(/\n/g, ', ')}, valid until ${new Date(cert.validTo).toISOString()}`;
}

/** The leaf's notAfter in seconds since the epoch (`switchboard_tls_certificate_expiry_seconds`). */
export function expirySeconds(cert: X509Certificate): number {
  return Math.floor(Date.parse(cert.validTo) / 1000);
}

/**
 * What an operator should hear about a certificate at start: expired, not
 * yet valid, expiring within {@link EXPIRY_WARNING_DAYS} days, or not valid
 * for `host` (the configured listen host; a wildcard address such as
 * `0.0.0.0` or `::` names no host and is not checked).
 */
export function certificateWarnings(cert: X509Certificate, host: string, now = Date.now()): string[] {
  const warnings: string[] = [];
  const notAfter = Date.parse(cert.validTo);
  const notBefore = Date.parse(cert.validFrom);
  if (notAfter <= now) warnings.push(`the certificate expired on ${new Date(notAfter).toISOString()}: clients refuse it; replace it (a reload picks the new one up)`);
  else if (notAfter - now < EXPIRY_WARNING_DAYS * DAY_MS) {
    const days = Math.floor((notAfter - now) / DAY_MS);
    warnings.push(`the certificate expires in ${days === 0 ? 'less than a day' : `${days} day${days === 1 ? '' : 's'}`} (${new Date(notAfter).toISOString()}): renew it (a reload picks the new one up)`);
  }
  if (notBefore > now) warnings.push(`the certificate is not valid before ${new Date(notBefore).toISOString()}: the clock, or a certificate issued for later?`);
  if (!coversHost(cert, host)) {
    warnings.push(`the certificate does not cover the host ${host} (${cert.subjectAltName ?? 'no subjectAltName'}): clients that connect by that name refuse it`);
  }
  return warnings;
}

/** Whether `cert` is valid for `host` (a name or an address; wildcard listen addresses always pass). */
export function coversHost(cert: X509Certificate, host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare === '' || bare === '0.0.0.0' || bare === '::' || bare === '::0') return true;
  return isIP(bare) !== 0 ? cert.checkIP(bare) !== undefined : cert.checkHost(bare) !== undefined;
}

/**
 * The client certificate a connection presented, for auth (attached to the
 * handshake's identity as `identity.clientCertificate`); null on a plain
 * socket or when the client sent none.
 */
export function clientCertificateOf(socket: unknown): ClientCertificate | null {
  const s = socket as Partial<tls.TLSSocket> | null;
  if (s === null || typeof s?.getPeerX509Certificate !== 'function') return null;
  const cert = s.getPeerX509Certificate();
  if (cert === undefined) return null;
  const commonName = /^CN=(.*)$/m.exec(cert.subject)?.[1];
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    ...(commonName !== undefined ? { commonName } : {}),
    ...(cert.subjectAltName !== undefined ? { subjectAltName: cert.subjectAltName } : {}),
    issuer: cert.issuer.replace(/\n/g, ', '),
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
    validTo: new Date(cert.validTo).toISOString(),
    authorized: s.authorized === true,
    ...(s.authorized !== true && s.authorizationError !== undefined ? { authorizationError: String(s.authorizationError) } : {}),
  };
}

// ---- reload ----------------------------------------------------------------------

/** What a reload did. */
export type ReloadResult = { ok: true; changed: boolean; certificate: X509Certificate } | { ok: false; error: string };

/** What the reloader reports to (the server's metrics). */
export interface TlsObserver {
  /** A reload ended (`success` or `failure`). */
  tlsReloaded(result: 'success' | 'failure'): void;
  /** The certificate now served (at start and after each successful reload). */
  tlsCertificate(cert: X509Certificate): void;
}

export interface CertificateReloaderOptions {
  /** The TLS server (an `https.Server` or an `Http2SecureServer`). */
  server: tls.Server;
  config: TlsConfig;
  /** What the server was created with. */
  initial: TlsMaterial;
  logger: Logger;
  observer: TlsObserver;
  /** The configured listen host: a reloaded certificate that does not cover it is warned about. */
  host: string;
  /** Quiet time after the last change in a watched directory before the reload, in ms. Default 250. */
  debounceMs?: number;
  /** For tests: the clock. */
  now?: () => number;
}

/**
 * Reloads the certificate of a running TLS server, on request
 * ({@link reload}) and when the files change ({@link watch}).
 *
 * Watching: the directories of `tls.cert`, `tls.key` and `tls.ca` (not the
 * files), because a file replaced by an atomic rename, or a symlink swapped
 * (Kubernetes' `..data`, certbot's `live/` links), is a new file that a
 * watch on the old one would never report. Any change in such a directory
 * starts a quiet period ({@link CertificateReloaderOptions.debounceMs}); then
 * the files are read again and, if their bytes differ from what is served,
 * reloaded. A half-written pair (the certificate renewed, the key not yet)
 * is refused and the old one kept until the next change completes it.
 */
export class CertificateReloader {
  private material: TlsMaterial;
  private readonly server: tls.Server;
  private readonly config: TlsConfig;
  private readonly logger: Logger;
  private readonly observer: TlsObserver;
  private readonly debounceMs: number;
  private readonly host: string;
  private readonly now: () => number;
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(options: CertificateReloaderOptions) {
    this.server = options.server;
    this.config = options.config;
    this.material = options.initial;
    this.logger = options.logger;
    this.observer = options.observer;
    this.debounceMs = options.debounceMs ?? 250;
    this.host = options.host;
    this.now = options.now ?? Date.now;
    this.observer.tlsCertificate(this.material.leaf);
  }

  /** The certificate served to new handshakes. */
  get certificate(): X509Certificate {
    return this.material.leaf;
  }

  /**
   * Read the files again, check them, and serve them to new handshakes. A
   * pair that fails (unreadable, not parseable, a key of another
   * certificate, expired) is refused: the old one stays, a log line says
   * why. With `onlyIfChanged`, identical files are left alone (not counted).
   */
  reload(trigger: string, options: { onlyIfChanged?: boolean } = {}): ReloadResult {
    let next: TlsMaterial;
    try {
      next = readTlsMaterial(this.config);
      const notAfter = Date.parse(next.leaf.validTo);
      if (notAfter <= this.now()) throw new TlsMaterialError('cert', `${this.config.cert} expired on ${new Date(notAfter).toISOString()}`);
    } catch (err) {
      const error = (err as Error).message;
      this.observer.tlsReloaded('failure');
      this.logger.error(
        { trigger, error, serving: describeCertificate(this.material.leaf), fingerprint: this.material.leaf.fingerprint256 },
        'TLS certificate reload refused: the old certificate is kept',
      );
      return { ok: false, error };
    }
    const changed = !(next.cert.equals(this.material.cert) && next.key.equals(this.material.key) && sameBytes(next.ca, this.material.ca));
    if (!changed && options.onlyIfChanged) return { ok: true, changed: false, certificate: this.material.leaf };
    try {
      this.server.setSecureContext(secureContextOptions(this.config, next));
    } catch (err) {
      const error = `setSecureContext: ${(err as Error).message}`;
      this.observer.tlsReloaded('failure');
      this.logger.error({ trigger, error }, 'TLS certificate reload refused: the old certificate is kept');
      return { ok: false, error };
    }
    const previous = this.material.leaf;
    this.material = next;
    this.observer.tlsReloaded('success');
    this.observer.tlsCertificate(next.leaf);
    this.logger.info(
      { trigger, changed, certificate: describeCertificate(next.leaf), fingerprint: next.leaf.fingerprint256, previous: previous.fingerprint256 },
      'TLS certificate reloaded',
    );
    for (const warning of certificateWarnings(next.leaf, this.host, this.now())) this.logger.warn({ certificate: describeCertificate(next.leaf) }, warning);
    return { ok: true, changed, certificate: next.leaf };
  }

  /** Watch the directories of the files; reload (if the bytes changed) after each burst of changes. Idempotent. */
  watch(): void {
    if (this.watchers.length > 0) return;
    const dirs = new Set([this.config.cert, this.config.key, ...(this.config.ca !== undefined ? [this.config.ca] : [])].map((f) => dirname(f)));
    for (const dir of dirs) {
      try {
        // persistent: false: a watch does not keep the process alive after close().
        const watcher = watch(dir, { persistent: false }, () => this.schedule());
        watcher.on('error', (err) => this.logger.warn({ dir, err: err.message }, 'TLS certificate directory watch failed: reload with SIGHUP'));
        this.watchers.push(watcher);
      } catch (err) {
        this.logger.warn({ dir, err: (err as Error).message }, 'cannot watch the TLS certificate directory: reload with SIGHUP');
      }
    }
  }

  private schedule(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reload('file change', { onlyIfChanged: true });
    }, this.debounceMs);
    this.timer.unref();
  }

  /** Stop watching. */
  close(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

function sameBytes(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
}
