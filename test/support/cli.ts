/**
 * `switchboard <command>` as a child process, from source through tsx (dist/
 * is not needed), for the CLI tests and the browser tests. Free of
 * node:test: a test registers the kill after it (see {@link runCli}).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { CHILD_WAIT, within } from './wait.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = new URL('../../src/cli/main.ts', import.meta.url).href;

export interface CliProcess {
  child: ChildProcess;
  /** Its stdout lines parsed as JSON (log lines); a line that is not JSON as `{ text }`. */
  logs: Array<Record<string, unknown>>;
  /** Its stdout lines as printed. */
  stdout: string[];
  /** Its stdout's bytes as they came (with `tty`: all the terminal showed, `\r` and escape sequences kept). */
  raw: Buffer[];
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line matching `match`; rejects if the process exits first, or after `ms`. */
  log(match: (line: Record<string, unknown>) => boolean, what: string, ms?: number): Promise<Record<string, unknown>>;
  /** The first log line with this `event` (the `echo` command's log format). */
  event(name: string, ms?: number): Promise<Record<string, unknown>>;
  /** Resolves with the first stderr line matching `match`; rejects if the process exits first, or after `ms`. */
  stderrLine(match: RegExp, what: string, ms?: number): Promise<string>;
  /** SIGTERM (graceful shutdown), wait for the exit (at most `ms`), then SIGKILL. */
  stop(ms?: number): Promise<void>;
  /** SIGKILL unless it exited. */
  kill(): void;
}


/** Children started and not exited: {@link killAll} ends them by PID. */
const running = new Set<ChildProcess>();

/** How {@link spawnCli} runs the command. */
export interface SpawnOptions {
  /** 'pipe' for commands that read stdin (`connect`). Default 'ignore' ('pipe' with `tty`). */
  stdin?: 'pipe' | 'ignore';
  /** Variables set (or, with undefined, removed) over the test run's environment. */
  env?: Record<string, string | undefined>;
  /** Working directory. Default: the repository root. */
  cwd?: string;
  /**
   * Run it on a pseudo-terminal (util-linux `script -qfec`): stdin, stdout
   * and stderr are a TTY; what is written to `child.stdin` is typed on it,
   * and `stdout` has everything the terminal shows (stderr too, the echo of
   * typed lines; `\r` removed).
   */
  tty?: boolean;
  /** Run under this open-files limit (`ulimit -n`; not with `tty`). */
  openFiles?: number;
}

/** The options' old name. */
export type CliOptions = SpawnOptions;

/** Variables of the test run that a CLI child does not inherit: its configuration, and proxies (a test sets them itself). */
const NOT_INHERITED = /^(SWITCHBOARD_|(https?|all|no)_proxy$)/i;

/** A word for `sh -c`, quoted. */
function shellWord(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * `switchboard <argv>` as a child process. The environment's `SWITCHBOARD_*`
 * and proxy variables are left out (no configuration from the test run),
 * `options.env` is set over it.
 */
export function spawnCli(argv: readonly string[], options: SpawnOptions = {}): CliProcess {
  const code = `import(${JSON.stringify(MAIN)}).then(async (m) => { process.exitCode = await m.main(${JSON.stringify(argv)}); })`;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !NOT_INHERITED.test(k)) env[k] = v;
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const command = [process.execPath, '--import', 'tsx', '-e', code];
  // A lower open-files limit: the shell sets it, then becomes node (same PID, killed as usual).
  const limited =
    options.openFiles === undefined ? command : ['/bin/sh', '-c', `ulimit -n ${Math.floor(options.openFiles)} && exec "$0" "$@"`, ...command];
  const child = options.tty
    ? spawn('script', ['-qfec', command.map(shellWord).join(' '), '/dev/null'], { cwd: options.cwd ?? ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(limited[0]!, limited.slice(1), { cwd: options.cwd ?? ROOT, env, stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'] });
  running.add(child);
  const logs: Array<Record<string, unknown>> = [];
  const stdout: string[] = [];
  const stderr: string[] = [];
  const raw: Buffer[] = [];
  child.stdout!.on('data', (chunk: Buffer) => raw.push(chunk));
  /** Set once the process exited and its output is read to the end. */
  let ended: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const waiters: Array<() => void> = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  createInterface({ input: child.stdout! }).on('line', (text) => {
    const line = options.tty ? text.replace(/\r/g, '') : text;
    stdout.push(line);
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      logs.push({ text: line });
    }
    wake();
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(line);
    wake();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  // 'close' comes after the last line of output: a line still in the pipe at 'exit' is not missed.
  child.on('close', (code, signal) => {
    ended = { code, signal };
    wake();
  });
  const what = `switchboard ${argv[0] ?? ''}`;
  /** The first value `probe()` finds, probed at each line of output; rejects when the process ended first, or after `ms`. */
  const waitFor = <T>(probe: () => T | undefined, lineWhat: string, ms: number): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    return new Promise<T>((resolve, reject) => {
      const check = (): void => {
        if (settled) return;
        const found = probe();
        if (found !== undefined) resolve(found);
        else if (ended) reject(new Error(`${what} exited (${ended.code ?? ended.signal}) before ${lineWhat}; stderr: ${stderr.join(' | ')}`));
        else waiters.push(check);
      };
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${lineWhat} (stderr: ${stderr.join(' | ')}; stdout: ${stdout.slice(-5).join(' | ')})`)), ms);
      check();
    }).finally(() => {
      settled = true;
      clearTimeout(timer);
    });
  };
  const proc: CliProcess = {
    child,
    logs,
    stdout,
    raw,
    stderr,
    exited,
    log(match, lineWhat, ms = CHILD_WAIT) {
      return waitFor(() => logs.find(match), lineWhat, ms);
    },
    stderrLine(match, lineWhat, ms = CHILD_WAIT) {
      return waitFor(() => stderr.find((l) => match.test(l)), lineWhat, ms);
    },
    event(name, ms) {
      return proc.log((l) => l.event === name, `the '${name}' log line`, ms);
    },
    async stop(ms = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      try {
        await within(exited, ms, `${what} to exit after SIGTERM`);
      } catch {
        child.kill('SIGKILL');
        await exited;
      }
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
  return proc;
}

/** {@link spawnCli}, killed after the test `t` (a node:test `TestContext`). */
export function runCli(t: { after(fn: () => unknown): void }, argv: readonly string[], options: SpawnOptions = {}): CliProcess {
  const proc = spawnCli(argv, options);
  t.after(() => proc.kill());
  return proc;
}

/** `switchboard serve`, listening. */
export interface Serve extends CliProcess {
  port: number;
  base: string;
}

export interface Echo extends CliProcess {
  port: number;
  /** ws://127.0.0.1:<port>/, from its 'listening' log line. */
  url: string;
}

/**
 * `switchboard <argv>` as a child process, resolved with its port once
 * `listening(entry)` finds it in one of its log lines (killed if it does not).
 */
async function startCli(argv: readonly string[], listening: (entry: Record<string, unknown>) => number | undefined): Promise<CliProcess & { port: number }> {
  const cli = spawnCli(argv);
  try {
    const entry = await cli.log((e) => listening(e) !== undefined, `switchboard ${argv[0]} to listen`, CHILD_WAIT);
    return Object.assign(cli, { port: listening(entry)! });
  } catch (err) {
    cli.kill();
    throw err;
  }
}

/** `switchboard serve --port <port> [...args]` in development mode (no auth key, loopback), from source. */
export async function startServe(port = 0, args: readonly string[] = []): Promise<Serve> {
  const cli = await startCli(['serve', '--port', String(port), ...args], (e) =>
    e.msg === 'listening' && typeof e.port === 'number' ? e.port : undefined,
  );
  return Object.assign(cli, { base: `http://127.0.0.1:${cli.port}` });
}

/** `switchboard echo --port <port> [...args]` from source. */
export async function startEcho(port = 0, args: readonly string[] = []): Promise<Echo> {
  const cli = await startCli(['echo', '--port', String(port), ...args], (e) =>
    e.event === 'listening' && typeof e.url === 'string' ? Number(new URL(e.url).port) : undefined,
  );
  return Object.assign(cli, { url: `ws://127.0.0.1:${cli.port}/` });
}

/** SIGKILL every child still running (for `after` hooks, when a test failed before stopping it). */
export function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
}
