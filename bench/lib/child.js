// Child-process plumbing for run.js: spawn (optionally pinned to one CPU with
// taskset), typed IPC waits with timeouts, and kill-by-PID cleanup of every
// child still alive when the parent exits for any reason.

import { spawn, spawnSync } from 'node:child_process';

/** @type {Set<import('node:child_process').ChildProcess>} */
const live = new Set();

function killAll() {
  for (const proc of live) {
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAll();
    process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 })[sig]);
  });
}

export function tasksetAvailable() {
  try {
    return spawnSync('taskset', ['-c', '0', process.execPath, '-e', '0'], { stdio: 'ignore', timeout: 5000 }).status === 0;
  } catch {
    return false;
  }
}

export class Child {
  /**
   * @param {string} label      for error messages, e.g. "server ws+native"
   * @param {string} script     path of the child script
   * @param {unknown} config    passed as one JSON argument
   * @param {NodeJS.ProcessEnv} env
   * @param {number|null} cpu   pin to this CPU with taskset, or null
   * @param {string[]} [nodeArgs] options for node before the script (e.g. --cpu-prof)
   */
  constructor(label, script, config, env, cpu, nodeArgs = []) {
    this.label = label;
    const args = [...nodeArgs, script, JSON.stringify(config)];
    const [cmd, argv] = cpu === null ? [process.execPath, args] : ['taskset', ['-c', String(cpu), process.execPath, ...args]];
    this.proc = spawn(cmd, argv, { env, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    live.add(this.proc);
    this.inbox = [];
    this.waiters = [];
    this.failure = null;
    this.stderr = '';
    this.exitCode = undefined;
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        live.delete(this.proc);
        this.exitCode = code ?? signal;
        this.setFailure(`${this.label} exited (${code ?? signal})`);
        resolve();
      });
    });
    this.proc.once('error', (err) => this.setFailure(`${this.label}: ${err.message}`));
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (chunk) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    this.proc.on('message', (msg) => {
      if (msg && msg.type === 'error') {
        this.setFailure(`${this.label}: ${msg.message}`);
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === msg.type);
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(msg);
      else this.inbox.push(msg);
    });
  }

  setFailure(message) {
    if (this.failure) return;
    const tail = this.stderr.trim().split('\n').slice(-3).join(' | ');
    this.failure = new Error(tail && !message.includes(tail) ? `${message} [stderr: ${tail}]` : message);
    for (const w of this.waiters.splice(0)) w.reject(this.failure);
  }

  send(msg) {
    if (this.proc.connected) this.proc.send(msg);
  }

  /** Next IPC message of `type`, rejecting on timeout, child error or exit. */
  next(type, timeoutMs, what) {
    const i = this.inbox.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${this.label}: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const waiter = {
        type,
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
      this.waiters.push(waiter);
    });
  }

  /** Ask politely (IPC 'exit'), then SIGKILL by PID after `graceMs`. */
  async stop(graceMs = 2000) {
    if (this.exitCode !== undefined) return;
    this.send({ type: 'exit' });
    const timer = setTimeout(() => this.kill(), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  kill() {
    if (this.exitCode !== undefined) return;
    try {
      process.kill(this.proc.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * In a child process: report any uncaught error to the parent over IPC and
 * exit, exit when the parent goes away, and (with `watchdogMs`) fail on our
 * own if the parent's timeouts somehow never fire. Returns the `fail` function.
 */
export function guardChildProcess(label, watchdogMs) {
  function fail(err) {
    const message = err instanceof Error ? err.stack || err.message : String(err);
    if (process.connected) process.send({ type: 'error', message }, () => process.exit(1));
    else process.exit(1);
  }
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
  process.on('disconnect', () => process.exit(0));
  if (watchdogMs !== undefined) setTimeout(() => fail(new Error(`${label} watchdog expired`)), watchdogMs).unref();
  return fail;
}

