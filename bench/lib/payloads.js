// Deterministic payloads, generated identically in every process.

import { prng } from '../../examples/arena/lib/prng.js';

/** Pseudo-random (incompressible) bytes, so no path can shortcut on zeros. */
export function binaryPayload(size, seed = 1) {
  const rnd = prng(seed);
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = (rnd() * 256) | 0;
  return buf;
}

const FIRST = ['Ada', 'Grace', 'Linus', 'Margaret', 'Ken', 'Barbara', 'Dennis', 'Frances', 'Edsger', 'Radia', 'Tim', 'Katherine', 'Alan', 'Hedy', 'Donald', 'Sophie'];
const LAST = ['Lovelace', 'Hopper', 'Torvalds', 'Hamilton', 'Thompson', 'Liskov', 'Ritchie', 'Allen', 'Dijkstra', 'Perlman', 'Berners-Lee', 'Johnson', 'Turing', 'Lamarr', 'Knuth', 'Wilson'];
const CITIES = ['Amsterdam', 'Berlin', 'Chicago', 'Dublin', 'Edinburgh', 'Lisbon', 'Montréal', 'Nairobi', 'Osaka', 'Porto', 'São Paulo', 'Tallinn'];
const TAGS = ['admin', 'beta', 'billing', 'mobile', 'desktop', 'trial', 'vip', 'support', 'eu', 'us', 'apac', 'legacy'];
const STATUSES = ['online', 'away', 'busy', 'offline'];

function record(rnd, id) {
  const pick = (list) => list[(rnd() * list.length) | 0];
  const first = pick(FIRST);
  const last = pick(LAST);
  return {
    id,
    uuid: Array.from({ length: 4 }, () => ((rnd() * 0x100000000) >>> 0).toString(16).padStart(8, '0')).join('-'),
    name: `${first} ${last}`,
    email: `${first}.${last}${(rnd() * 1000) | 0}@example.com`.toLowerCase(),
    active: rnd() < 0.7,
    status: pick(STATUSES),
    score: Math.round(rnd() * 100000) / 100,
    balance: { currency: 'EUR', amount: Math.round(rnd() * 1e7) / 100 },
    city: pick(CITIES),
    location: { lat: Math.round((rnd() * 180 - 90) * 1e5) / 1e5, lon: Math.round((rnd() * 360 - 180) * 1e5) / 1e5 },
    tags: [pick(TAGS), pick(TAGS)],
    createdAt: new Date(1.6e12 + Math.floor(rnd() * 1e11)).toISOString(),
  };
}

/**
 * A JSON array of realistic user-like objects, as close to `targetBytes`
 * (UTF-8) as whole objects allow without exceeding it.
 */
export function jsonMessage(targetBytes, seed) {
  const rnd = prng(seed);
  const parts = [];
  let bytes = 2; // "[" and "]"
  for (let id = seed * 100000; ; id++) {
    const s = JSON.stringify(record(rnd, id));
    const add = Buffer.byteLength(s) + (parts.length ? 1 : 0);
    if (bytes + add > targetBytes) break;
    parts.push(s);
    bytes += add;
  }
  return `[${parts.join(',')}]`;
}

/**
 * The messages one scenario sends. Binary scenarios send one buffer over and
 * over; the JSON scenario cycles through a pool of distinct documents, because
 * resending one identical 16 KiB string would let a context-takeover deflate
 * stream encode it as a single back-reference, which no real traffic does.
 * @returns {{ messages: (Buffer|string)[], lengths: number[] }}
 */
export function scenarioMessages(scenario) {
  const messages =
    scenario.kind === 'json'
      ? Array.from({ length: scenario.pool ?? 32 }, (_, i) => jsonMessage(scenario.size, i + 1))
      : [binaryPayload(scenario.size)];
  const lengths = messages.map((m) => (typeof m === 'string' ? Buffer.byteLength(m) : m.length));
  return { messages, lengths };
}
