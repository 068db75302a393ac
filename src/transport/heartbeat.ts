/**
 * Heartbeats of many connections on one timer: a hashed timing wheel.
 *
 * One Node timer per connection (an interval for the pings, a timeout for
 * the pong) costs two `Timeout` objects and their list entries per socket,
 * and 19,000 of them never let V8 settle. Here a server (or, on the client
 * side, every connection with the same options) has one wheel: an array of
 * slots, each an intrusive doubly linked list of members (the links live on
 * the member, so joining costs no allocation), and one `setInterval` that
 * advances a cursor one slot per `step` ms and handles the members of the
 * slot it reaches. Pings are spread over the slots by when each connection
 * opened, and the first one by up to a quarter interval more (see add), so a
 * tick pings a share of the connections, not all of them at once.
 *
 * A member's cycle: `interval` ms after it joined it is pinged and
 * `awaitingPong` is set; the connection clears the flag whenever anything
 * arrives from the peer. The member is looked at again after the shorter of
 * `interval` and `timeout`: still waiting `timeout` ms after the ping,
 * `_heartbeatExpired()` (the connection terminates); still waiting but not
 * for that long, it waits on (no second ping before the answer to the
 * first); answered, the next ping goes out `interval` ms after the previous
 * one. So pings come every `interval` whatever the timeout, as with one
 * timer per connection. Deadlines are kept to within one `step` (at most
 * 250 ms, and 1/16 of the shorter period).
 */

export interface HeartbeatOptions {
  /** Ping the peer after this many ms. */
  interval: number;
  /** Terminate the connection when no data or pong arrived this many ms after a ping. Default: `interval`. */
  timeout?: number;
}

/** What the wheel needs from a connection. The `_hb*` fields are the wheel's own. */
export interface HeartbeatMember {
  /** Set by the wheel when it pings; cleared by the connection when the peer sends anything. */
  awaitingPong: boolean;
  _hbNext: HeartbeatMember | null;
  _hbPrev: HeartbeatMember | null;
  /** The slot the member waits in; -1 when it is in none. */
  _hbSlot: number;
  /** Whether the member waits for the answer to a ping (else for its next ping). */
  _hbPinged: boolean;
  /** When the last ping went out (the wheel's clock, ms). */
  _hbPingAt: number;
  /** Send a ping. */
  _heartbeatPing(): void;
  /** No pong (nor anything else) within the timeout. */
  _heartbeatExpired(): void;
}

/** The longest tick; shorter periods get a proportionally shorter one. */
const MAX_STEP_MS = 250;
const MIN_STEP_MS = 5;
/** The share of the interval by which a member's first ping may come early (see add). */
const FIRST_PING_SPREAD = 0.25;
/** Adding it again and again (mod 1) spreads points evenly over [0, 1) whenever one stops. */
const GOLDEN_RATIO_FRACTION = 0.6180339887498949;

export class HeartbeatWheel {
  readonly interval: number;
  readonly timeout: number;
  private readonly step: number;
  private readonly slots: (HeartbeatMember | null)[];
  private cursor = 0;
  /** Ticks handled since `origin`. */
  private ticks = 0;
  private origin = 0;
  private members = 0;
  /** Where in the first ping's spread the last member to join landed, 0..1 (see add). */
  private joinPhase = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(options: HeartbeatOptions) {
    this.interval = options.interval;
    this.timeout = options.timeout ?? options.interval;
    if (!(this.interval > 0) || !(this.timeout > 0)) throw new RangeError('heartbeat interval and timeout must be > 0 ms');
    this.step = Math.max(MIN_STEP_MS, Math.min(MAX_STEP_MS, Math.floor(Math.min(this.interval, this.timeout) / 16)));
    // Enough slots that the longest wait lands in a slot the cursor reaches once, before going round again.
    this.slots = new Array<HeartbeatMember | null>(Math.ceil(Math.max(this.interval, this.timeout) / this.step) + 2).fill(null);
  }

  /** Connections in the wheel. */
  get size(): number {
    return this.members;
  }

  /**
   * Start the member's heartbeat: its first ping is due between ¾ of
   * `interval` and `interval` ms from now, and every later one `interval` ms
   * after the one before. Connections that open together (a load test, a
   * crowd reconnecting after a restart) would otherwise be pinged together,
   * one write each in the same step, every interval: the joins are spread
   * evenly over that last quarter (a golden-ratio sequence), so a thousand
   * that came in one step are pinged a few dozen at a time.
   */
  add(member: HeartbeatMember): void {
    if (member._hbSlot !== -1) return;
    if (this.members++ === 0) this.start();
    member.awaitingPong = false;
    member._hbPinged = false;
    this.joinPhase = (this.joinPhase + GOLDEN_RATIO_FRACTION) % 1;
    this.schedule(member, this.interval * (1 - FIRST_PING_SPREAD * this.joinPhase));
  }

  /** Stop the member's heartbeat (it closed). No-op when it is not in the wheel. */
  remove(member: HeartbeatMember): void {
    if (member._hbSlot === -1) return;
    this.unlink(member);
    if (--this.members === 0) this.stop();
  }

  private start(): void {
    this.origin = performance.now();
    this.ticks = 0;
    this.timer = setInterval(advance, this.step, this);
    this.timer.unref();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Put `member` in the slot `delay` ms (rounded up to whole steps, at least one) ahead of the cursor. */
  private schedule(member: HeartbeatMember, delay: number): void {
    const steps = Math.max(1, Math.ceil(delay / this.step));
    const slot = (this.cursor + steps) % this.slots.length;
    const head = this.slots[slot]!;
    member._hbSlot = slot;
    member._hbPrev = null;
    member._hbNext = head;
    if (head) head._hbPrev = member;
    this.slots[slot] = member;
  }

  private unlink(member: HeartbeatMember): void {
    const { _hbPrev: prev, _hbNext: next } = member;
    if (prev) prev._hbNext = next;
    else this.slots[member._hbSlot] = next;
    if (next) next._hbPrev = prev;
    member._hbSlot = -1;
    member._hbPrev = member._hbNext = null;
  }

  /** @internal The timer: handle every slot whose time has come (a late timer catches up). */
  _advance(): void {
    const now = performance.now() - this.origin;
    const due = Math.floor(now / this.step);
    // A timer late by more than a turn of the wheel: one turn handles every member once.
    let n = Math.min(due - this.ticks, this.slots.length);
    this.ticks = due;
    while (n-- > 0 && this.members > 0) {
      this.cursor = (this.cursor + 1) % this.slots.length;
      this.handleSlot(this.cursor, now);
    }
  }

  private handleSlot(slot: number, now: number): void {
    let member = this.slots[slot]!;
    // Detach the whole list first: members rescheduled below go to other slots.
    this.slots[slot] = null;
    let thrown: { err: unknown } | null = null;
    while (member !== null) {
      const next = member._hbNext;
      member._hbSlot = -1;
      member._hbPrev = member._hbNext = null;
      try {
        this.handle(member, now);
      } catch (err) {
        // An application listener threw (an 'error' listener, say): the other members still get their turn.
        thrown ??= { err };
      }
      member = next!;
    }
    if (thrown) {
      const { err } = thrown;
      process.nextTick(() => {
        throw err;
      });
    }
  }

  private handle(member: HeartbeatMember, now: number): void {
    if (member._hbPinged) {
      const since = now - member._hbPingAt;
      if (member.awaitingPong) {
        if (since >= this.timeout - this.step / 2) {
          // Out of the wheel first: the member's close handler will call remove() and find nothing to do.
          if (--this.members === 0) this.stop();
          member._heartbeatExpired();
          return;
        }
        this.schedule(member, this.timeout - since);
        return;
      }
      member._hbPinged = false;
      if (since < this.interval - this.step / 2) {
        this.schedule(member, this.interval - since);
        return;
      }
    }
    member.awaitingPong = true;
    member._hbPinged = true;
    // Whole ms: a small integer, not a boxed double per connection.
    member._hbPingAt = Math.floor(now);
    this.schedule(member, Math.min(this.interval, this.timeout));
    member._heartbeatPing();
  }
}

function advance(wheel: HeartbeatWheel): void {
  wheel._advance();
}

/** Client connections share one wheel per (interval, timeout). */
const clientWheels = new Map<string, HeartbeatWheel>();

/** The wheel shared by every client connection with these options. */
export function sharedHeartbeatWheel(options: HeartbeatOptions): HeartbeatWheel {
  const key = `${options.interval}/${options.timeout ?? options.interval}`;
  let wheel = clientWheels.get(key);
  if (!wheel) {
    wheel = new HeartbeatWheel(options);
    clientWheels.set(key, wheel);
  }
  return wheel;
}
