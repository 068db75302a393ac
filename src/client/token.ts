/**
 * The client's token: which one an attempt authenticates with, and keeping
 * it fresh on a connection (the server's `refresh` push, or `refreshBeforeMs`
 * before the expiry it announced).
 */
import type { OkReply } from '../wire/messages.js';
import { ClientError } from './errors.js';
import { setTimer, type Timer } from './timer.js';
import { RealtimeCloseCode } from '../wire/messages.js';

/** `getToken()` answered with no token (empty, null): the application says the user is not authorized. */
const NO_TOKEN = 'getToken returned no token (not authorized): not reconnecting';
const noTokenErrors = new WeakSet<ClientError>();

/** Whether `err` says that `getToken()` answered no token (then the client gives up, 4500). */
export function isNoTokenError(err: unknown): boolean {
  return err instanceof ClientError && noTokenErrors.has(err);
}

export interface TokenOptions {
  token: string | undefined;
  getToken: (() => Promise<string>) | undefined;
  requestTimeoutMs: number;
  refreshBeforeMs: number;
}

/** What a refresh needs from the link. */
export interface TokenHost {
  /** Whether a connection is up. */
  readonly connected: boolean;
  /** An `error` event. */
  error(err: ClientError): void;
  /** Send `refresh` with `token` on the current connection; its reply goes to `onReply`. */
  sendRefresh(token: string, onReply: (reply: OkReply, error: ClientError | null) => void): void;
  /** Stop for good (no token: not authorized). */
  giveUp(code: number, reason: string): void;
  /** The pause before try `n` after failures (it grows like the reconnect backoff), in ms. */
  pauseMs(n: number): number;
}

export class Tokens {
  readonly #options: TokenOptions;
  readonly #host: TokenHost;
  #current: string | undefined;
  #refreshTimer: Timer | null = null;
  #refreshing = false;
  /** Identifies the `getToken()` call of the refresh under way (a late answer to an abandoned one is dropped). */
  #refreshSeq = 0;
  /** Bounds that call by `requestTimeoutMs`. */
  #refreshWaitTimer: Timer | null = null;
  /** Refresh failures in a row (the pause before the next try grows like the reconnect backoff). */
  #refreshFailures = 0;

  constructor(options: TokenOptions, host: TokenHost) {
    this.#options = options;
    this.#host = host;
  }

  /** Whether the application can give new tokens (`getToken`). */
  get renewable(): boolean {
    return this.#options.getToken !== undefined;
  }

  /** The token the next `auth` sends (undefined: anonymous, no `auth`). */
  get current(): string | undefined {
    return this.#current;
  }

  /** The token of an attempt, once it came: the attempt authenticates with it. */
  use(token: string | undefined): void {
    this.#current = token;
  }

  /** The token for an attempt: a given token serves the first; getToken serves every later one (the token may have expired). */
  forAttempt(everConnected: boolean): Promise<string | undefined> {
    if (this.#options.getToken && (this.#current !== undefined || this.#options.token === undefined || everConnected)) {
      return this.#callGetToken();
    }
    return Promise.resolve(this.#options.token);
  }

  /**
   * Call `getToken()`: a synchronous throw, a rejection or a non-promise
   * result are all handled. Rejects with `RT_CLIENT_TOKEN`; an empty result
   * rejects with an error in `noTokenErrors` (the application says: not
   * authorized).
   */
  #callGetToken(): Promise<string> {
    const getToken = this.#options.getToken!;
    return new Promise<unknown>((resolve) => resolve(getToken())).then(
      (token) => {
        if (typeof token === 'string' && token.length > 0) return token;
        const err = new ClientError('RT_CLIENT_TOKEN', NO_TOKEN);
        noTokenErrors.add(err);
        throw err;
      },
      (err: unknown) => {
        throw new ClientError('RT_CLIENT_TOKEN', `getToken failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      },
    );
  }

  /** Connected: refresh before `expiresIn` (ms; null when the server announced no expiry). */
  connected(expiresIn: number | null): void {
    this.#refreshFailures = 0;
    if (expiresIn !== null) this.#scheduleRefresh(expiresIn);
  }

  /** The connection ended (or never came): a refresh under way belongs to it (the next one asks getToken itself). */
  stop(): void {
    for (const timer of [this.#refreshTimer, this.#refreshWaitTimer]) if (timer) clearTimeout(timer);
    this.#refreshTimer = this.#refreshWaitTimer = null;
    this.#refreshing = false;
    this.#refreshSeq++;
  }

  #scheduleRefresh(expiresIn: number): void {
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    if (!this.#options.getToken || !(expiresIn >= 0)) return;
    const before = this.#options.refreshBeforeMs;
    const delay = expiresIn > before ? expiresIn - before : expiresIn / 2;
    this.#armRefreshAt(Date.now() + delay);
  }

  /** Refresh at `at` (ms since the epoch), also when that is further away than a timer can wait. */
  #armRefreshAt(at: number): void {
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = setTimer(() => {
      this.#refreshTimer = null;
      if (Date.now() < at) this.#armRefreshAt(at);
      else this.refresh();
    }, at - Date.now());
  }

  /**
   * Get a new token and send `refresh` (on the server's push, or before the
   * expiry). getToken() is bounded by `requestTimeoutMs`; a failure (or the
   * server refusing the token) is an `error` event and another try after a
   * pause that grows like the reconnect backoff, while the token lasts (at
   * its expiry the server closes with 4002 and the reconnect asks
   * getToken() again). No token at all (an empty answer) ends the
   * connection for good, as at connect.
   */
  refresh(): void {
    if (!this.#options.getToken) {
      this.#host.error(new ClientError('RT_CLIENT_TOKEN', 'the server asked for a new token, but there is no getToken option: the connection closes with 4002 at expiry'));
      return;
    }
    if (this.#refreshing || !this.#host.connected) return;
    this.#refreshing = true;
    // Every end of the connection bumps the sequence: an answer that finds it changed belongs to a connection that is gone.
    const seq = ++this.#refreshSeq;
    const timeoutMs = this.#options.requestTimeoutMs;
    if (this.#refreshWaitTimer) clearTimeout(this.#refreshWaitTimer);
    this.#refreshWaitTimer = setTimer(() => {
      this.#refreshWaitTimer = null;
      if (seq !== this.#refreshSeq) return;
      this.#refreshSeq++; // a late token is not used
      this.#refreshFailed(new ClientError('RT_CLIENT_TOKEN', `getToken did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    this.#callGetToken().then(
      (token) => {
        if (seq !== this.#refreshSeq) return;
        if (this.#refreshWaitTimer) clearTimeout(this.#refreshWaitTimer);
        this.#refreshWaitTimer = null;
        this.#refreshing = false;
        this.#current = token;
        if (!this.#host.connected) return; // the next connection authenticates with it
        this.#host.sendRefresh(token, (reply, error) => this.#onRefreshReply(reply, error));
      },
      (err: unknown) => {
        if (seq !== this.#refreshSeq) return;
        if (this.#refreshWaitTimer) clearTimeout(this.#refreshWaitTimer);
        this.#refreshWaitTimer = null;
        const error = err as ClientError;
        if (noTokenErrors.has(error)) {
          this.#refreshing = false;
          this.#host.error(error);
          // Unless an 'error' listener closed or restarted the client (which ends this connection).
          if (seq === this.#refreshSeq && this.#host.connected) this.#host.giveUp(RealtimeCloseCode.Unauthorized, error.message);
          return;
        }
        this.#refreshFailed(error);
      },
    );
  }

  #onRefreshReply(reply: OkReply, error: ClientError | null): void {
    if (error) {
      // The server kept the old token (invalid or another user's): try again later.
      this.#refreshFailed(error);
      return;
    }
    this.#refreshFailures = 0;
    if (typeof reply.expiresIn === 'number') this.#scheduleRefresh(reply.expiresIn);
  }

  #refreshFailed(error: ClientError): void {
    this.#refreshing = false;
    this.#host.error(error);
    if (!this.#host.connected) return;
    this.#refreshFailures++;
    this.#armRefreshAt(Date.now() + this.#host.pauseMs(this.#refreshFailures));
  }
}
