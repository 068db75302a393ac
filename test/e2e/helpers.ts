/**
 * Browser end-to-end tests: Debian's Chromium (/usr/bin/chromium) driven by
 * playwright-core, against `switchboard serve` started as a child process
 * (from source, through tsx) in development mode. The pages load the SDK
 * bundle from dist/client.js: run `npm run build` first.
 *
 * A missing Chromium or bundle fails the tests with a message saying how to
 * get it; nothing is skipped.
 */
import { after, before } from 'node:test';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { killAll, ROOT, startServe, type Serve } from '../support/cli.js';
import { CHILD_WAIT, within } from '../support/wait.js';

export { killAll, ROOT, within };
export { startEcho, startServe, type CliProcess, type Echo, type Serve } from '../support/cli.js';
export const CHROMIUM = '/usr/bin/chromium';
export const OUTPUT = join(ROOT, 'test-output');
/** Start of Chromium. */
const START_MS = CHILD_WAIT;
/** Every wait in a page. */
export const WAIT_MS = 10_000;

/** The flags this machine needs (see the machine notes): no sandbox as root, no background traffic to Google. */
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Fails (never skips) when something the browser tests need is missing. */
export function requirePrerequisites(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is missing at ${CHROMIUM}: the browser tests need it. Install it with ` +
        '`apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium` (.ci/run does this).',
    );
  }
  if (!existsSync(join(ROOT, 'dist', 'client.js'))) {
    throw new Error('dist/client.js is missing: the pages load the SDK bundle from it. Run `npm run build` first.');
  }
}

/** What {@link TestBrowser.page} can break in the page before its scripts run. */
export interface PageOptions {
  /**
   * Every WebSocket fails before opening (see {@link blockWebSocket}) until
   * the test calls `window.unblockWebSocket()` in the page.
   */
  blockWebSocket?: boolean;
  /** Every EventSource fails before opening (see {@link blockEventSource}). */
  blockEventSource?: boolean;
}

export interface TestBrowser {
  browser: Browser;
  /** A new page in its own context (its own storage, like another browser), with page errors collected. */
  page(options?: PageOptions): Promise<Page>;
  /** Uncaught errors of every page so far. */
  errors: string[];
  close(): Promise<void>;
}

/**
 * Launch Chromium with a fresh profile: playwright gives every `launch()` a
 * new empty user-data-dir of its own in the temp dir (it refuses a
 * `--user-data-dir` flag), and removes it on close.
 */
export async function launchBrowser(options: { /** More environment for Chromium (e.g. a HOME whose ~/.pki/nssdb trusts a CA). */ env?: Record<string, string> } = {}): Promise<TestBrowser> {
  requirePrerequisites();
  // Chromium's own temp files (crash dumps, shared memory) go to a folder of this run.
  const tmp = mkdtempSync(join(tmpdir(), 'switchboard-e2e-'));
  const browser = await within(
    chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, env: { ...process.env, TMPDIR: tmp, ...options.env } }),
    START_MS,
    'Chromium to start',
  );
  const contexts: BrowserContext[] = [];
  const errors: string[] = [];
  return {
    browser,
    errors,
    async page(options = {}) {
      const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
      contexts.push(context);
      if (options.blockWebSocket) await context.addInitScript({ content: blockWebSocket });
      if (options.blockEventSource) await context.addInitScript({ content: blockEventSource });
      const page = await context.newPage();
      page.setDefaultTimeout(WAIT_MS);
      page.on('pageerror', (err) => errors.push(`${page.url()}: ${err.message}`));
      return page;
    },
    async close() {
      const closing = (async () => {
        for (const c of contexts) await c.close().catch(() => {});
        await browser.close().catch(() => {});
      })();
      // After a failed test Chromium may never answer the close (seen once in CI, after an aborted
      // navigation): the test file would then never end. Bounded, then its processes are killed.
      const closed = await Promise.race([closing.then(() => true), new Promise<false>((resolve) => setTimeout(resolve, CLOSE_MS, false))]);
      if (!closed) {
        killChildChromium();
        await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 5000))]);
      }
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** How long closing the browser may take before its processes are killed. */
const CLOSE_MS = 15_000;

/** SIGKILL every Chromium process this process started (its children: /proc/<pid>/stat's parent field). */
function killChildChromium(): void {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && /chrom/i.test(comm)) process.kill(Number(entry), 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

/**
 * Runs in the page before its scripts: every WebSocket goes to a port where
 * nothing listens, so it fails before opening (error, then close 1006), as
 * behind a proxy that drops upgrades. `window.blockedWebSockets` counts them.
 * The block is read on each construction: `window.unblockWebSocket()` lifts
 * it (returning `blockedWebSockets` at that moment) and from then on every
 * WebSocket goes where the page asked, counted in `window.allowedWebSockets`.
 * (A string: a function would be serialized with whatever tsx added to it.)
 */
const blockWebSocket = `(() => {
  const Real = window.WebSocket;
  let blocked = true;
  window.blockedWebSockets = 0;
  window.allowedWebSockets = 0;
  window.unblockWebSocket = () => {
    blocked = false;
    return window.blockedWebSockets;
  };
  function MaybeBlockedWebSocket(url, protocols) {
    if (!blocked) {
      window.allowedWebSockets++;
      return new Real(url, protocols);
    }
    window.blockedWebSockets++;
    return new Real('ws://127.0.0.1:9/blocked', protocols);
  }
  Object.assign(MaybeBlockedWebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.WebSocket = MaybeBlockedWebSocket;
})();`;

/**
 * Runs in the page before its scripts: every EventSource goes to a port
 * where nothing listens, so its stream errors before it opens, as behind a
 * proxy that breaks streaming responses (the session POSTs still get
 * through). `window.blockedEventSources` counts them.
 */
const blockEventSource = `(() => {
  const Real = window.EventSource;
  window.blockedEventSources = 0;
  function BlockedEventSource(url, init) {
    window.blockedEventSources++;
    return new Real('http://127.0.0.1:9/blocked', init);
  }
  Object.assign(BlockedEventSource, { CONNECTING: 0, OPEN: 1, CLOSED: 2 });
  window.EventSource = BlockedEventSource;
})();`;

/** A screenshot in test-output/ (git-ignored). */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(OUTPUT, { recursive: true });
  const path = join(OUTPUT, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Open the chat page and wait until it is connected and in the room (presence shows this user). */
export async function openChat(page: Page, base: string, room: string, user: string): Promise<void> {
  await page.goto(`${base}/?room=${encodeURIComponent(room)}&user=${encodeURIComponent(user)}`);
  await page.waitForSelector('#state[data-state="connected"]');
  await page.waitForSelector(`#presence li[data-user="${user}"]`);
}

/** Type a message and send it with Enter. */
export async function say(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** Wait until a chat message with this text is on the page. */
export async function waitForMessage(page: Page, text: string, ms = WAIT_MS): Promise<void> {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#messages li.msg .text')].some((el) => el.textContent === t),
    text,
    { timeout: ms },
  );
}

/** The users in the presence list. */
export function presence(page: Page): Promise<string[]> {
  return page.$$eval('#presence li', (items) => items.map((li) => (li as HTMLElement).dataset.user ?? ''));
}

/** The transport badge's text. */
export function transport(page: Page): Promise<string> {
  return page.$eval('#transport', (el) => el.textContent ?? '');
}

/**
 * One browser and one `switchboard serve` for a test file: started before its
 * tests, stopped after them (children killed by PID as a last resort). A test
 * may replace `server` (a restart); the new one is stopped too.
 */
export function useBrowserAndServe(): { browser: TestBrowser; server: Serve } {
  const env = {} as { browser: TestBrowser; server: Serve };
  before(async () => {
    env.browser = await launchBrowser();
    env.server = await startServe();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
    killAll();
  });
  return env;
}

// ---- WebSockets over HTTP/2 (test/e2e/http2.test.ts, test/e2e/sdk-http2.test.ts) ----

/** `switchboard_websockets_total` of a `serve` with TLS on localhost:`port`, by the HTTP version that carried them. */
export function websocketsTotal(port: number, ca: Buffer): Promise<{ h2: number; h1: number }> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: 'localhost', port, path: '/metrics', ca }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          const value = (series: string): number => {
            const line = text.split('\n').find((l) => l.startsWith(`${series} `));
            return line ? Number(line.slice(series.length + 1)) : 0;
          };
          resolve({ h2: value('switchboard_websockets_total{http_version="2"}'), h1: value('switchboard_websockets_total{http_version="1.1"}') });
        });
      })
      .on('error', reject);
  });
}

/**
 * A page in a fresh context (no connection to any server yet) that ignores
 * certificate errors (the test certificate is self-signed), with the status
 * Chromium got for each WebSocket handshake (DevTools
 * `Network.webSocketHandshakeResponseReceived`: 200 over h2, 101 over HTTP/1.1).
 */
export async function handshakeRecordingPage(browser: Browser): Promise<{ page: Page; statuses: number[] }> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const cdp = await context.newCDPSession(page);
  const statuses: number[] = [];
  cdp.on('Network.webSocketHandshakeResponseReceived', (e: { response: { status: number } }) => statuses.push(e.response.status));
  await cdp.send('Network.enable');
  return { page, statuses };
}
