/**
 * `switchboard cert`: a development certificate — a local CA and a leaf for
 * localhost, 127.0.0.1 and ::1 (and each `--host`) signed by it — made with
 * the `openssl` binary, and the words to make a browser trust the CA.
 *
 * Why the `openssl` binary rather than a library: Node's crypto makes keys
 * but not certificates, so a library would be a new runtime dependency of
 * the server for a development tool; `openssl` is on every Linux and macOS
 * machine (LibreSSL there: only commands both understand are used), and the
 * operator can run and audit the same commands. A CA already in the
 * directory is reused, so a browser that trusts it keeps trusting the next
 * leaf; the leaf is made anew each time.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname, tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { HELP, parseCommandArgs, UsageError } from './args.js';

/** The names every development certificate covers. */
export const DEV_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '::1'];
/** Leaf validity by default, in days: 825 is the longest macOS and iOS accept for a certificate under a locally trusted CA. */
export const DEFAULT_LEAF_DAYS = 825;
/** The CA's validity, in days (10 years: trusted once, it keeps signing new leaves). */
const CA_DAYS = 3650;

export interface KeyPair {
  /** PEM file of the certificate. */
  cert: string;
  /** PEM file of its key (mode 0600). */
  key: string;
}

/** Run openssl; a missing binary or a failure becomes an error that says which command and why. */
function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new Error('the openssl binary is needed and not on PATH (apt install openssl, dnf install openssl, brew install openssl)');
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.toString().trim() || e.message}`);
  }
}

/** An EC P-256 key (SEC1 PEM, which Node, Go, nginx and browsers all read), mode 0600. */
function makeKey(file: string, cwd: string): void {
  // Made 0600 before openssl writes into it: never readable by others, not even for a moment.
  const path = resolve(cwd, file);
  writeFileSync(path, '', { mode: 0o600 });
  chmodSync(path, 0o600);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', path], cwd);
}

/** A `-subj` value: `/CN=...` with `/` and `\` escaped as openssl wants them. */
function subject(commonName: string): string {
  return `/CN=${commonName.replace(/[\\/]/g, (c) => `\\${c}`)}`;
}

/** A random positive serial (RFC 5280 §4.1.2.2: unique per CA, at most 20 octets). */
function serial(): string {
  return `0x${(randomBytes(16)[0]! & 0x7f).toString(16).padStart(2, '0')}${randomBytes(15).toString('hex')}`;
}

const REQ_CONFIG = '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n';

/**
 * A self-signed CA (`basicConstraints CA:TRUE, pathlen:0`, `keyCertSign`)
 * in `dir` as `<name>.pem` and `<name>-key.pem`.
 */
export function createCertificateAuthority(dir: string, options: { name?: string; commonName?: string; days?: number } = {}): KeyPair {
  const name = options.name ?? 'ca';
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'switchboard-cert-'));
  try {
    writeFileSync(
      join(work, 'ca.cnf'),
      `${REQ_CONFIG}[v3_ca]\nbasicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n`,
    );
    const pair = { cert: resolve(dir, `${name}.pem`), key: resolve(dir, `${name}-key.pem`) };
    makeKey(pair.key, work);
    openssl(
      ['req', '-new', '-x509', '-config', 'ca.cnf', '-extensions', 'v3_ca', '-key', pair.key, '-out', pair.cert, '-days', String(options.days ?? CA_DAYS), '-sha256', '-set_serial', serial(), '-subj', subject(options.commonName ?? 'Switchboard development CA')],
      work,
    );
    return pair;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * A leaf signed by `ca`, in `dir` as `<name>.pem` and `<name>-key.pem`:
 * `subjectAltName` with every host (DNS names and IP addresses), for TLS
 * servers (`usage: 'server'`, the default) or clients (`'client'`).
 */
export function issueCertificate(
  ca: KeyPair,
  dir: string,
  options: { name?: string; commonName?: string; hosts?: readonly string[]; days?: number; usage?: 'server' | 'client' } = {},
): KeyPair {
  const name = options.name ?? 'cert';
  const hosts = options.hosts ?? [];
  const commonName = options.commonName ?? hosts[0] ?? name;
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'switchboard-cert-'));
  try {
    const san = hosts.map((h) => (isIP(h) !== 0 ? `IP:${h}` : `DNS:${h}`)).join(', ');
    writeFileSync(join(work, 'req.cnf'), REQ_CONFIG);
    writeFileSync(
      join(work, 'leaf.cnf'),
      [
        '[v3_leaf]',
        'basicConstraints = critical, CA:FALSE',
        'keyUsage = critical, digitalSignature',
        `extendedKeyUsage = ${options.usage === 'client' ? 'clientAuth' : 'serverAuth'}`,
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
        ...(san !== '' ? [`subjectAltName = ${san}`] : []),
        '',
      ].join('\n'),
    );
    const pair = { cert: resolve(dir, `${name}.pem`), key: resolve(dir, `${name}-key.pem`) };
    makeKey(pair.key, work);
    openssl(['req', '-new', '-config', 'req.cnf', '-key', pair.key, '-out', 'leaf.csr', '-subj', subject(commonName)], work);
    openssl(
      ['x509', '-req', '-in', 'leaf.csr', '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', serial(), '-days', String(options.days ?? DEFAULT_LEAF_DAYS), '-sha256', '-extfile', 'leaf.cnf', '-extensions', 'v3_leaf', '-out', pair.cert],
      work,
    );
    return pair;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface DevCertificates {
  ca: KeyPair;
  /** Whether the CA was already in the directory (and reused). */
  caReused: boolean;
  leaf: KeyPair;
  hosts: string[];
}

/** The CA (reused when `out/ca.pem` and `out/ca-key.pem` exist) and a leaf for {@link DEV_HOSTS} plus `hosts`. */
export function createDevCertificates(options: { out: string; days?: number; hosts?: readonly string[] }): DevCertificates {
  const out = resolve(options.out);
  const hosts = [...new Set([...DEV_HOSTS, ...(options.hosts ?? [])])];
  const existing = { cert: join(out, 'ca.pem'), key: join(out, 'ca-key.pem') };
  const caReused = existsSync(existing.cert) && existsSync(existing.key);
  const ca = caReused ? existing : createCertificateAuthority(out, { commonName: `Switchboard development CA (${userInfo().username}@${hostname()})` });
  const leaf = issueCertificate(ca, out, { name: 'localhost', commonName: 'localhost', hosts, days: options.days });
  return { ca, caReused, leaf, hosts };
}

/** What to do with the files: trust the CA (per browser and system), then serve. */
export function trustInstructions(made: DevCertificates): string {
  const ca = made.ca.cert;
  const q = (p: string) => (/[^\w@%+=:,./-]/.test(p) ? `'${p.replace(/'/g, `'\\''`)}'` : p);
  return [
    `${made.caReused ? 'reused the CA' : 'made a new CA'}: ${ca}  (its key ${made.ca.key}: keep it private, never commit or share it;`,
    '  anyone with it can make certificates your browser trusts)',
    `certificate for ${made.hosts.join(', ')}: ${made.leaf.cert}  (key ${made.leaf.key})`,
    '',
    'Trust the CA once (only on this machine; the leaf can then be remade without doing it again):',
    '  macOS (Safari, Chrome, Edge):',
    `    sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain ${q(ca)}`,
    '  Linux, system store (curl, Node with --use-openssl-ca, most tools):',
    `    Debian/Ubuntu: sudo cp ${q(ca)} /usr/local/share/ca-certificates/switchboard-dev-ca.crt && sudo update-ca-certificates`,
    `    Fedora/RHEL:   sudo cp ${q(ca)} /etc/pki/ca-trust/source/anchors/switchboard-dev-ca.pem && sudo update-ca-trust`,
    '  Linux, Chromium and Chrome (their own NSS store; certutil is in libnss3-tools / nss-tools):',
    `    certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n "Switchboard development CA" -i ${q(ca)}`,
    '    (no ~/.pki/nssdb yet, Chromium never ran: mkdir -p ~/.pki/nssdb && certutil -d sql:$HOME/.pki/nssdb -N --empty-password)',
    '    or Settings > Privacy and security > Security > Manage certificates > Authorities > Import',
    '  Firefox (its own store, every OS):',
    '    Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import,',
    '    tick "Trust this CA to identify websites"; or for a profile directory P:',
    `    certutil -d sql:P -A -t "C,," -n "Switchboard development CA" -i ${q(ca)}`,
    `  Windows: certutil -addstore -user Root ${q(ca)}  (or double-click it: Install > Current User > Trusted Root)`,
    `  Node clients: NODE_EXTRA_CA_CERTS=${q(ca)} node app.js   (or the ca option of the WebSocket)`,
    '',
    'Serve with it:',
    `  switchboard serve --tls-cert ${q(made.leaf.cert)} --tls-key ${q(made.leaf.key)}`,
    '  then open https://localhost:8080/  (wss://localhost:8080/rt for WebSocket clients)',
    `Check it: openssl s_client -connect localhost:8080 -CAfile ${q(ca)} -brief </dev/null`,
    '',
  ].join('\n');
}

export function cert(args: string[]): number {
  const parsed = parseCommandArgs('cert', {
    args,
    options: {
      ...HELP,
      out: { type: 'string', short: 'o', default: 'certs' },
      days: { type: 'string' },
      host: { type: 'string', multiple: true },
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  let days: number | undefined;
  if (values.days !== undefined) {
    days = Number(values.days);
    if (!/^[0-9]+$/.test(values.days) || days < 1 || days > DEFAULT_LEAF_DAYS) {
      throw new UsageError(`--days: expected a whole number of days from 1 to ${DEFAULT_LEAF_DAYS} (browsers refuse longer), got '${values.days}'`);
    }
  }
  for (const h of values.host ?? []) {
    if (h === '' || /[\s,/\\]/.test(h)) throw new UsageError(`--host: expected a host name or an IP address, got '${h}'`);
  }
  const made = createDevCertificates({ out: values.out, days, hosts: values.host });
  process.stdout.write(trustInstructions(made));
  return 0;
}
