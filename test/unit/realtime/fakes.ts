/**
 * Fakes for the realtime layer's unit and property tests: a recording
 * `RealtimeTransport`, a counting codec, and a `Hub` on the memory broker
 * with token auth, namespaces and limits that tests override.
 */
import { MemoryBroker, MemoryPresenceStore } from '../../../src/brokers/memory/memory-broker.js';
import { Hub, type HubAuth, type HubLimits, type Identity, type NamespaceRules } from '../../../src/realtime/hub.js';
import type { Session } from '../../../src/realtime/session.js';
import { nullObserver, SharedMessage, type HubObserver, type RealtimeTransport } from '../../../src/realtime/transport.js';
import { jsonCodec, type WireCodec } from '../../../src/wire/codec.js';

/** A codec that counts how often it encoded each op. */
export function countingCodec(base: WireCodec): WireCodec & { encodes: Map<string, number> } {
  const encodes = new Map<string, number>();
  return {
    subprotocol: base.subprotocol,
    binary: base.binary,
    decode: base.decode,
    encodes,
    encode(message) {
      const op = (message as { op: string }).op;
      encodes.set(op, (encodes.get(op) ?? 0) + 1);
      return base.encode(message);
    },
  };
}

/** Records every payload; closing reports back to the session like a real adapter (asynchronously). */
export class FakeTransport implements RealtimeTransport {
  readonly kind = 'fake';
  bufferedAmount = 0;
  readonly sent: Array<string | Uint8Array> = [];
  readonly sharedSent: SharedMessage[] = [];
  closedWith: { code: number; reason: string } | null = null;
  terminated = false;
  session: Session | null = null;
  constructor(readonly codec: WireCodec = jsonCodec) {}

  send(payload: string | Uint8Array): void {
    this.sent.push(payload);
  }
  sendShared(shared: SharedMessage): void {
    this.sharedSent.push(shared);
    this.sent.push(shared.encoded(this.codec));
  }
  close(code: number, reason: string): void {
    if (this.closedWith || this.terminated) return;
    this.closedWith = { code, reason };
    queueMicrotask(() => this.session?.closedByTransport(code));
  }
  terminate(): void {
    if (this.closedWith || this.terminated) return;
    this.terminated = true;
    queueMicrotask(() => this.session?.closedByTransport(1006));
  }
  /** Every message sent, decoded. */
  get messages(): Array<Record<string, any>> {
    return this.sent.map((p) => this.codec.decode(p) as Record<string, any>);
  }
  pushes(op: string): Array<Record<string, any>> {
    return this.messages.filter((m) => m.op === op);
  }
  reply(id: number | string): Record<string, any> | undefined {
    return this.messages.find((m) => (m.op === 'ok' || m.op === 'error') && m.id === id);
  }
}

export const NS: Record<string, NamespaceRules> = {
  chat: { history: { size: 100, ttlMs: 0 }, presence: 'off', presenceBatchMs: 0, clientPublish: true, anonymousSubscribe: true },
  room: { history: { size: 0, ttlMs: 0 }, presence: 'full', presenceBatchMs: 30, clientPublish: true, anonymousSubscribe: true },
  live: { history: { size: 0, ttlMs: 0 }, presence: 'off', presenceBatchMs: 0, clientPublish: true, anonymousSubscribe: true },
};

export const TOKENS: Record<string, Identity> = {
  'tok-alice': { user: 'alice', expiresAt: Infinity },
  'tok-bob': { user: 'bob', info: { name: 'Bob' }, expiresAt: Infinity },
};

export interface Setup {
  hub: Hub;
  broker: MemoryBroker;
  presence: MemoryPresenceStore;
  dropped: string[];
  /** Connect a fake transport (authenticated as `user` when given, at the handshake). */
  connect(user?: string | null, codec?: WireCodec): { session: Session; transport: FakeTransport };
  /** Send a request and wait (bounded) for its reply. */
  request(session: Session, transport: FakeTransport, message: Record<string, unknown>): Promise<Record<string, any>>;
  close(): Promise<void>;
}

export function setup(
  options: {
    limits?: Partial<HubLimits>;
    auth?: Partial<HubAuth>;
    now?: () => number;
    broker?: MemoryBroker;
    ping?: { intervalMs: number; timeoutMs: number };
    idleTimeoutMs?: number;
  } = {},
): Setup {
  const broker = options.broker ?? new MemoryBroker({ sweepIntervalMs: 0 });
  const presence = new MemoryPresenceStore();
  const dropped: string[] = [];
  const observer: HubObserver = { ...nullObserver, dropped: (reason) => dropped.push(reason) };
  const auth: HubAuth = {
    async verify(token) {
      const identity = TOKENS[token];
      if (!identity) throw Object.assign(new Error('invalid token'), { closeCode: 4500 });
      return identity;
    },
    can: () => true,
    anonymous: true,
    authTimeoutMs: 5000,
    refreshGraceMs: 1000,
    ...options.auth,
  };
  const limits: HubLimits = {
    messageRate: { perSecond: 1000, burst: 1000 },
    byteRate: { perSecond: 1 << 20, burst: 1 << 20 },
    maxMessageSize: 65536,
    maxDataDepth: 32,
    maxSubscriptions: 100,
    sendHighWaterMark: 1 << 20,
    slowConsumer: 'disconnect',
    ...options.limits,
  };
  const hub = new Hub({
    broker,
    presence,
    auth,
    limits,
    namespaceOf: (channel) => NS[channel.split('/')[0]!] ?? NS.live!,
    ping: options.ping ?? { intervalMs: 0, timeoutMs: 1000 },
    idleTimeoutMs: options.idleTimeoutMs ?? 0,
    observer,
    now: options.now,
  });
  let nextId = 1;
  return {
    hub,
    broker,
    presence,
    dropped,
    connect(user = null, codec = jsonCodec) {
      const transport = new FakeTransport(codec);
      const identity = user === null ? null : { user, expiresAt: Infinity };
      const session = hub.connect(transport, identity, '127.0.0.1');
      transport.session = session;
      return { session, transport };
    },
    async request(session, transport, message) {
      const id = nextId++;
      session.receive(transport.codec.encode({ ...message, id }));
      const deadline = Date.now() + 2000;
      for (;;) {
        const reply = transport.reply(id);
        if (reply) return reply;
        if (Date.now() > deadline) throw new Error(`no reply to ${JSON.stringify(message)}`);
        await new Promise((resolve) => setImmediate(resolve));
      }
    },
    async close() {
      hub.shutdown(0);
      hub.dispose();
      await broker.close();
      await presence.close();
    },
  };
}

/** The close code a transport was closed with (a function: assertions on `closedWith` would narrow it). */
export function closeCodeOf(transport: FakeTransport): number | undefined {
  return transport.closedWith?.code;
}

/** Let queued microtasks and immediates (broker delivery, async requests) run. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

export { sleep } from '../../support/wait.js';

