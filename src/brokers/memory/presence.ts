/**
 * `MemoryPresenceStore`: the PresenceStore contract (../broker.ts) inside
 * one process, beside MemoryBroker (memory-broker.ts). No I/O.
 */
import { isValidChannel } from '../../wire/channel.js';
import type { ClientInfo, PresenceStore } from '../broker.js';
import { brokerError, invalidChannel } from '../errors.js';

interface ChannelPresence {
  clients: Map<string, ClientInfo>;
  /** Clients per non-empty user id. */
  users: Map<string, number>;
}

/**
 * A single-process PresenceStore. Entries live until removed: in one
 * process a node cannot vanish without its store, so there is no TTL. A
 * channel's state goes with its last client. `stats().users` counts distinct
 * non-empty user ids (anonymous clients count in `clients` only).
 */
export class MemoryPresenceStore implements PresenceStore {
  readonly #channels = new Map<string, ChannelPresence>();
  #closed = false;

  /** Add or replace (same client id) an entry. */
  async add(channel: string, info: ClientInfo): Promise<void> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    let presence = this.#channels.get(channel);
    if (presence === undefined) {
      presence = { clients: new Map(), users: new Map() };
      this.#channels.set(channel, presence);
    }
    const previous = presence.clients.get(info.client);
    if (previous !== undefined) uncountUser(presence, previous.user);
    presence.clients.set(info.client, info);
    if (info.user !== '') presence.users.set(info.user, (presence.users.get(info.user) ?? 0) + 1);
  }

  async remove(channel: string, clientId: string): Promise<void> {
    this.#checkOpen();
    const presence = this.#channels.get(channel);
    if (presence === undefined) return;
    const previous = presence.clients.get(clientId);
    if (previous === undefined) return;
    presence.clients.delete(clientId);
    uncountUser(presence, previous.user);
    if (presence.clients.size === 0) this.#channels.delete(channel);
  }

  async get(channel: string): Promise<Record<string, ClientInfo>> {
    this.#checkOpen();
    const out: Record<string, ClientInfo> = {};
    const presence = this.#channels.get(channel);
    if (presence !== undefined) for (const [id, info] of presence.clients) out[id] = info;
    return out;
  }

  async stats(channel: string): Promise<{ clients: number; users: number }> {
    this.#checkOpen();
    const presence = this.#channels.get(channel);
    return { clients: presence?.clients.size ?? 0, users: presence?.users.size ?? 0 };
  }

  /** Channels with at least one entry (for tests and metrics). */
  get channelCount(): number {
    return this.#channels.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#channels.clear();
  }

  #checkOpen(): void {
    if (this.#closed) throw brokerError('RT_ERR_BROKER_CLOSED', 'The presence store is closed');
  }
}

function uncountUser(presence: ChannelPresence, user: string): void {
  if (user === '') return;
  const n = presence.users.get(user) ?? 0;
  if (n <= 1) presence.users.delete(user);
  else presence.users.set(user, n - 1);
}
