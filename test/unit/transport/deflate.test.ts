import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { setTimeout as sleep } from 'node:timers/promises';
import * as zlib from 'node:zlib';
import {
  DEFAULT_DEFLATE_THRESHOLD,
  DEFAULT_ZLIB_CONCURRENCY,
  DEFLATE_STREAM_CHANNEL,
  type DeflateStreamCreated,
  getZlibConcurrencyStats,
  PerMessageDeflateCodec,
  type PerMessageDeflateCodecOptions,
  setZlibConcurrencyLimit,
} from '../../../src/transport/deflate.js';
import type { NegotiatedDeflate } from '../../../src/protocol/extensions/permessage-deflate.js';
import { WebSocketError } from '../../../src/protocol/errors.js';

// ---------------------------------------------------------------------------
// Helpers

const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const MiB = 1024 * 1024;

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

function params(overrides: Partial<NegotiatedDeflate> = {}): NegotiatedDeflate {
  return {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
    ...overrides,
  };
}

const open: PerMessageDeflateCodec[] = [];

function codec(
  role: 'server' | 'client',
  p: NegotiatedDeflate = params(),
  extra: Partial<PerMessageDeflateCodecOptions> = {},
): PerMessageDeflateCodec {
  const c = new PerMessageDeflateCodec({ role, params: p, maxPayload: 0, ...extra });
  open.push(c);
  return c;
}

/** A server and a client codec with the same parameters. */
function pair(p: NegotiatedDeflate = params(), extra: Partial<PerMessageDeflateCodecOptions> = {}) {
  return { server: codec('server', p, extra), client: codec('client', p, extra) };
}

afterEach(() => {
  for (const c of open.splice(0)) c.close();
  setZlibConcurrencyLimit(DEFAULT_ZLIB_CONCURRENCY);
});

function deflate(c: PerMessageDeflateCodec, data: Buffer | string, fin = true): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    c.deflate(Buffer.from(data), fin, (err, out) => (err ? reject(err) : resolve(out!)));
  });
}

function inflate(c: PerMessageDeflateCodec, data: Buffer, fin = true): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    c.inflate(data, fin, (err, out) => (err ? reject(err) : resolve(out!)));
  });
}

async function rejectsWith(promise: Promise<unknown>, code: string, closeCode: number): Promise<WebSocketError> {
  let caught: unknown;
  await promise.then(
    () => assert.fail(`expected ${code}`),
    (err: unknown) => {
      caught = err;
    },
  );
  assert.ok(caught instanceof WebSocketError, `expected a WebSocketError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.equal(caught.closeCode, closeCode);
  return caught;
}

/** Decode one message with a fresh zlib inflater: no shared window with anything before. */
function freshInflate(message: Buffer, windowBits = 15): Buffer {
  return zlib.inflateRawSync(Buffer.concat([message, TRAILER]), {
    windowBits,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
}

/**
 * Decode with a streaming inflater whose output buffer is 64 bytes, so any
 * back reference further than 64 bytes must come from zlib's window of
 * 2^windowBits bytes: a distance beyond it fails with "invalid distance too far back".
 */
function strictInflate(message: Buffer, windowBits: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = zlib.createInflateRaw({ windowBits, chunkSize: 64 });
    const out: Buffer[] = [];
    s.on('data', (chunk: Buffer) => out.push(chunk));
    s.on('error', reject);
    s.write(Buffer.concat([message, TRAILER]));
    s.flush(zlib.constants.Z_SYNC_FLUSH, () => {
      resolve(Buffer.concat(out));
      s.close();
    });
  });
}

/** `count` copies of a random block of `period` bytes: matches exist only at distance `period`. */
function periodic(period: number, count: number): Buffer {
  const block = randomBytes(period);
  return Buffer.concat(Array.from({ length: count }, () => block));
}

function text(length: number): Buffer {
  const words = ['channel', 'presence', 'offset', 'epoch', 'message', 'switchboard', 'deflate', 'window'];
  let s = '';
  for (let i = 0; s.length < length; i++) s += `${words[(i * 7) % words.length]}:${i % 97} `;
  return Buffer.from(s.slice(0, length));
}

/** Records the zlib streams the codecs create while `fn` runs. */
async function withStreams<T>(fn: (streams: DeflateStreamCreated[]) => Promise<T>): Promise<T> {
  const streams: DeflateStreamCreated[] = [];
  const onMessage = (message: unknown): void => {
    streams.push(message as DeflateStreamCreated);
  };
  subscribe(DEFLATE_STREAM_CHANNEL, onMessage);
  try {
    return await fn(streams);
  } finally {
    unsubscribe(DEFLATE_STREAM_CHANNEL, onMessage);
  }
}

/** Wait until the event loop has run pending I/O and thread-pool callbacks a few times. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await sleep(5);
}

// ---------------------------------------------------------------------------

describe('decompression bomb', () => {
  // First in the file, so that the process's peak RSS is still near its baseline.
  it('stops a 1 GiB bomb at maxPayload with 1009, without allocating the output', async (t) => {
    // Build the bomb without ever holding 1 GiB: after the first MiB of zeros
    // the compressor is in a steady state, so each further MiB (with a sync
    // flush) compresses to the same bytes, which can be repeated.
    const d = zlib.createDeflateRaw({ level: 9, flush: zlib.constants.Z_SYNC_FLUSH });
    const zeros = Buffer.alloc(MiB);
    const parts: Buffer[] = [];
    for (let i = 0; i < 3; i++) {
      const out: Buffer[] = [];
      const onData = (chunk: Buffer): void => {
        out.push(chunk);
      };
      d.on('data', onData);
      await new Promise<void>((resolve) => d.write(zeros, () => resolve()));
      d.off('data', onData);
      parts.push(Buffer.concat(out));
    }
    d.close();
    const [first, step, step2] = parts as [Buffer, Buffer, Buffer];
    assert.deepEqual(step2, step, 'the compressed MiB repeats');
    const small = freshInflate(Buffer.concat([first, step, step, step]));
    assert.equal(small.length, 4 * MiB);
    assert.ok(small.every((b) => b === 0));
    const bomb = Buffer.concat([first, ...Array.from({ length: 1023 }, () => step)]);
    assert.ok(bomb.length < 1.1 * MiB, `bomb is ${bomb.length} bytes`);

    await withStreams(async (streams) => {
      const client = codec('client', params(), { maxPayload: MiB });
      const baseline = process.memoryUsage();
      const baselinePeakKiB = process.resourceUsage().maxRSS;
      let emitted = 0;
      let peakGrowth = 0;
      const promise = inflate(client, bomb);
      // The codec created its stream synchronously: observe what zlib emits.
      assert.equal(streams.length, 1);
      const stream = streams[0]!.stream;
      stream.on('data', (chunk: Buffer) => {
        emitted += chunk.length;
        const m = process.memoryUsage();
        peakGrowth = Math.max(peakGrowth, m.rss + m.arrayBuffers - baseline.rss - baseline.arrayBuffers);
      });

      await rejectsWith(promise, 'WS_ERR_MESSAGE_TOO_BIG', 1009);
      assert.ok(stream.destroyed, 'the inflate stream is destroyed at once');
      const emittedAtError = emitted;
      assert.ok(emittedAtError > MiB && emittedAtError <= MiB + 64 * 1024, `emitted ${emittedAtError} bytes`);
      await settle();
      assert.equal(emitted, emittedAtError, 'zlib produced nothing more after the limit');

      const growthMB = peakGrowth / 1e6;
      const peakRssGrowthMB = (process.resourceUsage().maxRSS - baselinePeakKiB) / 1024;
      t.diagnostic(
        `bomb ${bomb.length} B; inflated ${emittedAtError} B before stopping; ` +
          `peak rss+arrayBuffers growth ${growthMB.toFixed(1)} MB, peak RSS growth ${peakRssGrowthMB.toFixed(1)} MB`,
      );
      assert.ok(growthMB < 100, `rss+arrayBuffers grew by ${growthMB.toFixed(1)} MB`);
      assert.ok(peakRssGrowthMB < 100, `peak RSS grew by ${peakRssGrowthMB.toFixed(1)} MB`);
      assert.equal(getZlibConcurrencyStats().active, 0, 'the limiter slot was released');
    });
  });
});

describe('RFC 7692 §7.2.3 examples', () => {
  it('§7.2.3.1: "Hello" compresses to f2 48 cd c9 c9 07 00, on both sides', async () => {
    for (const role of ['server', 'client'] as const) {
      assert.deepEqual(await deflate(codec(role), 'Hello'), hex('f2 48 cd c9 c9 07 00'));
    }
    assert.equal((await inflate(codec('client'), hex('f2 48 cd c9 c9 07 00'))).toString(), 'Hello');
    assert.equal((await inflate(codec('server'), hex('f2 48 cd c9 c9 07 00'))).toString(), 'Hello');
  });

  it('§7.2.3.1: the same message split into two frames', async () => {
    const client = codec('client');
    const a = await inflate(client, hex('f2 48 cd'), false);
    const b = await inflate(client, hex('c9 c9 07 00'), true);
    assert.equal(Buffer.concat([a, b]).toString(), 'Hello');
  });

  it('§7.2.3.2: with context takeover the second "Hello" is f2 00 11 00 00', async () => {
    const { server, client } = pair();
    const first = await deflate(server, 'Hello');
    const second = await deflate(server, 'Hello');
    assert.deepEqual(first, hex('f2 48 cd c9 c9 07 00'));
    assert.deepEqual(second, hex('f2 00 11 00 00'));
    assert.equal((await inflate(client, first)).toString(), 'Hello');
    assert.equal((await inflate(client, second)).toString(), 'Hello');
  });

  it('§7.2.3.2: with server_no_context_takeover both are f2 48 cd c9 c9 07 00', async () => {
    const server = codec('server', params({ serverNoContextTakeover: true }));
    assert.deepEqual(await deflate(server, 'Hello'), hex('f2 48 cd c9 c9 07 00'));
    assert.deepEqual(await deflate(server, 'Hello'), hex('f2 48 cd c9 c9 07 00'));
  });

  it('§7.2.3.3: a block with BFINAL set, then a further message', async () => {
    const client = codec('client');
    assert.equal((await inflate(client, hex('f3 48 cd c9 c9 07 00 00'))).toString(), 'Hello');
    // The peer's deflate stream ended, so the next message starts a new one.
    assert.equal((await inflate(client, hex('f2 48 cd c9 c9 07 00'))).toString(), 'Hello');
  });

  it('§7.2.3.4: a non-compressed (stored) block', async () => {
    const client = codec('client');
    assert.equal((await inflate(client, hex('00 05 00 fa ff 48 65 6c 6c 6f 00'))).toString(), 'Hello');
  });

  it('§7.2.3.6: an empty message is the single octet 00, also right after another flush', async () => {
    const { server, client } = pair();
    const empty1 = await deflate(server, '');
    const empty2 = await deflate(server, ''); // zlib emits nothing for this flush
    assert.deepEqual(empty1, hex('00'));
    assert.deepEqual(empty2, hex('00'));
    const hello = await deflate(server, 'Hello');
    assert.equal((await inflate(client, empty1)).length, 0);
    assert.equal((await inflate(client, empty2)).length, 0);
    assert.equal((await inflate(client, hello)).toString(), 'Hello');
  });
});

describe('round trips', () => {
  const payloads: [string, () => Buffer][] = [
    ['empty', () => Buffer.alloc(0)],
    ['small', () => Buffer.from('{"op":"pub","channel":"chat","data":"hi"}')],
    ['1 MiB random', () => randomBytes(MiB)],
    ['1 MiB repetitive', () => text(MiB)],
  ];
  for (const [from, to] of [
    ['server', 'client'],
    ['client', 'server'],
  ] as const) {
    for (const noTakeover of [false, true]) {
      it(`${from} → ${to}, ${noTakeover ? 'no context takeover' : 'context takeover'}`, async () => {
        const p = params({ serverNoContextTakeover: noTakeover, clientNoContextTakeover: noTakeover });
        const sender = codec(from, p);
        const receiver = codec(to, p);
        for (let round = 0; round < 2; round++) {
          for (const [name, make] of payloads) {
            const data = make();
            const compressed = await deflate(sender, data);
            assert.deepEqual(await inflate(receiver, compressed), data, `${name}, round ${round}`);
            if (name === '1 MiB repetitive') assert.ok(compressed.length < data.length / 20, `${name} compressed`);
            if (name === '1 MiB random') assert.ok(compressed.length < data.length * 1.01, `${name} barely grows`);
          }
        }
      });
    }
  }

  it('fragmented messages, including empty and 1-byte fragments', async () => {
    const { server, client } = pair();
    for (let round = 0; round < 3; round++) {
      const data = Buffer.concat([text(100_000), randomBytes(50_000), text(60_000)]);
      const cuts = [0, 1, 1, 2, 70_000, 70_000, 150_001, 209_999, data.length];
      const fragments: Buffer[] = [];
      for (let i = 0; i + 1 < cuts.length; i++) {
        fragments.push(await deflate(server, data.subarray(cuts[i]!, cuts[i + 1]!), i + 2 === cuts.length));
      }
      // Inflated frame by frame on the other side...
      const pieces: Buffer[] = [];
      for (let i = 0; i < fragments.length; i++) pieces.push(await inflate(client, fragments[i]!, i + 1 === fragments.length));
      assert.deepEqual(Buffer.concat(pieces), data, `round ${round}`);
    }
    // ...and the first message's payloads, joined, are one valid message for any inflater.
    const s2 = codec('server');
    const data = text(30_000);
    const joined = Buffer.concat([
      await deflate(s2, data.subarray(0, 10_000), false),
      await deflate(s2, data.subarray(10_000, 10_000), false),
      await deflate(s2, data.subarray(10_000), true),
    ]);
    assert.deepEqual(freshInflate(joined), data);
  });

  it('an empty last fragment', async () => {
    const { server, client } = pair();
    const a = await deflate(server, 'Hello, ', false);
    const b = await deflate(server, '', true);
    assert.deepEqual(b, hex('00'));
    const out = Buffer.concat([await inflate(client, a, false), await inflate(client, b, true)]);
    assert.equal(out.toString(), 'Hello, ');
    assert.equal((await inflate(client, await deflate(server, 'again'))).toString(), 'again');
  });
});

describe('context takeover', () => {
  it('with takeover, a repeated message compresses to a few bytes that need the shared window', async () => {
    const { server, client } = pair();
    const data = randomBytes(16 * 1024);
    const first = await deflate(server, data);
    const second = await deflate(server, data);
    assert.ok(first.length > 16 * 1024, `first: ${first.length}`);
    assert.ok(second.length < data.length / 50, `second: ${second.length}`);
    assert.throws(() => freshInflate(second), /invalid distance too far back/);
    assert.deepEqual(await inflate(client, first), data);
    assert.deepEqual(await inflate(client, second), data);
  });

  it('without takeover, every message decodes with a fresh inflater', async () => {
    const server = codec('server', params({ serverNoContextTakeover: true }));
    const data = randomBytes(16 * 1024);
    const messages = [await deflate(server, data), await deflate(server, data), await deflate(server, data)];
    for (const m of messages) {
      assert.ok(m.length > 16 * 1024);
      assert.deepEqual(freshInflate(m), data);
    }
    // Fragments of one message still share the window (the reset is per message).
    const a = await deflate(server, data, false);
    const b = await deflate(server, data, true);
    assert.ok(b.length < data.length / 50, `second fragment: ${b.length}`);
    assert.deepEqual(freshInflate(Buffer.concat([a, b])), Buffer.concat([data, data]));
  });

  it('the role selects which parameters apply to each direction', async () => {
    // The server resets its context; the client keeps its own.
    const { server, client } = pair(params({ serverNoContextTakeover: true, clientNoContextTakeover: false }));
    const data = randomBytes(8 * 1024);
    await deflate(server, data);
    assert.ok((await deflate(server, data)).length > 8 * 1024, 'server: no takeover');
    await deflate(client, data);
    assert.ok((await deflate(client, data)).length < data.length / 50, 'client: takeover');
  });

  it('an inflater without takeover starts each message from an empty window', async () => {
    // The client promised client_no_context_takeover but refers to its previous message anyway.
    const server = codec('server', params({ clientNoContextTakeover: true }));
    const cheater = codec('client', params()); // compresses with takeover
    const data = randomBytes(4096);
    assert.deepEqual(await inflate(server, await deflate(cheater, data)), data);
    await rejectsWith(inflate(server, await deflate(cheater, data)), 'WS_ERR_INFLATE_FAILED', 1007);
  });
});

describe('window bits', () => {
  for (const role of ['server', 'client'] as const) {
    for (let bits = 9; bits <= 15; bits++) {
      it(`${role} compresses within a ${bits}-bit window`, async () => {
        const p = role === 'server' ? params({ serverMaxWindowBits: bits }) : params({ clientMaxWindowBits: bits });
        // Repeats just beyond the window, and well inside it.
        const far = periodic((1 << bits) + 100, 3);
        const near = periodic(1 << (bits - 1), 3);
        for (const data of [far, near]) {
          // Fresh codecs: strictInflate decodes one message on its own.
          const sender = codec(role, p);
          const receiver = codec(role === 'server' ? 'client' : 'server', p);
          const compressed = await deflate(sender, data);
          assert.deepEqual(await strictInflate(compressed, bits), data);
          assert.deepEqual(await inflate(receiver, compressed), data);
        }
        if (bits < 15) {
          // The strict check does catch a stream that needs a larger window.
          const wide = zlib.deflateRawSync(far, { windowBits: 15 });
          await assert.rejects(strictInflate(wide, bits), /invalid distance too far back/);
        }
      });
    }
  }

  it('8 bits: compresses with 9 (zlib cannot do 8) yet decodes with a 256-byte window', async () => {
    await withStreams(async (streams) => {
      const p = params({ serverMaxWindowBits: 8 });
      for (const period of [200, 300]) {
        // Fresh codecs: strictInflate decodes one message on its own.
        const { server, client } = pair(p);
        const data = periodic(period, 20);
        const compressed = await deflate(server, data);
        assert.deepEqual(await strictInflate(compressed, 8), data);
        assert.deepEqual(await inflate(client, compressed), data);
        // zlib's fast levels find fewer matches in so small a window, but they do find some.
        if (period === 200) assert.ok(compressed.length < data.length / 2, `matches within 256 bytes are used: ${compressed.length}`);
      }
      const control = zlib.deflateRawSync(periodic(300, 20), { windowBits: 15 });
      await assert.rejects(strictInflate(control, 8), /invalid distance too far back/);
      const created = new Set(streams.map((s) => `${s.role} ${s.direction} ${s.windowBits}`));
      assert.deepEqual([...created].sort(), ['client inflate 8', 'server deflate 9']);
    });
  });

  it('8 bits on the inflate side: a client may compress with 9, the server inflates with 8', async () => {
    const p = params({ clientMaxWindowBits: 8 });
    const { server, client } = pair(p);
    const data = periodic(180, 50);
    assert.deepEqual(await inflate(server, await deflate(client, data)), data);
  });
});

describe('decompression limit', () => {
  it('one frame over maxPayload fails with 1009', async () => {
    const server = codec('server');
    const client = codec('client', params(), { maxPayload: MiB });
    const compressed = await deflate(server, Buffer.alloc(2 * MiB));
    const err = await rejectsWith(inflate(client, compressed), 'WS_ERR_MESSAGE_TOO_BIG', 1009);
    assert.equal(err.name, 'MessageTooBigError');
  });

  it('exactly maxPayload bytes pass, one more fails', async () => {
    const server = codec('server', params({ serverNoContextTakeover: true }));
    const exact = codec('client', params(), { maxPayload: 100_000 });
    const over = codec('client', params(), { maxPayload: 99_999 });
    const compressed = await deflate(server, text(100_000));
    assert.equal((await inflate(exact, compressed)).length, 100_000);
    await rejectsWith(inflate(over, compressed), 'WS_ERR_MESSAGE_TOO_BIG', 1009);
  });

  it('counts the whole message across frames, and starts again for the next message', async () => {
    const server = codec('server');
    const client = codec('client', params(), { maxPayload: MiB });
    const piece = Buffer.alloc(400 * 1024, 0x61);
    // Two messages of 800 KiB each: each under the limit.
    for (let m = 0; m < 2; m++) {
      const a = await inflate(client, await deflate(server, piece, false), false);
      const b = await inflate(client, await deflate(server, piece, true), true);
      assert.equal(a.length + b.length, 800 * 1024);
    }
    // One message of 3 × 400 KiB: the third frame crosses 1 MiB.
    assert.equal((await inflate(client, await deflate(server, piece, false), false)).length, 400 * 1024);
    assert.equal((await inflate(client, await deflate(server, piece, false), false)).length, 400 * 1024);
    const third = await deflate(server, piece, true);
    await rejectsWith(inflate(client, third), 'WS_ERR_MESSAGE_TOO_BIG', 1009);
    // The inflate side is finished; the codec does not throw, and compression still works.
    await rejectsWith(inflate(client, hex('f2 48 cd c9 c9 07 00')), 'WS_ERR_MESSAGE_TOO_BIG', 1009);
    assert.deepEqual(freshInflate(await deflate(client, 'still works')), Buffer.from('still works'));
    assert.equal(getZlibConcurrencyStats().active, 0);
  });

  it('maxPayload 0 means no limit', async () => {
    const { server, client } = pair();
    const data = Buffer.alloc(5 * MiB);
    assert.equal((await inflate(client, await deflate(server, data))).length, 5 * MiB);
  });
});

describe('invalid data', () => {
  it('fails with 1007 and keeps failing without throwing', async () => {
    await withStreams(async (streams) => {
      const client = codec('client');
      const err = await rejectsWith(inflate(client, hex('ff ff ff ff')), 'WS_ERR_INFLATE_FAILED', 1007);
      assert.equal(err.name, 'InvalidDataError');
      assert.ok(streams[0]!.stream.destroyed, 'the stream is released');
      await rejectsWith(inflate(client, hex('f2 48 cd c9 c9 07 00')), 'WS_ERR_INFLATE_FAILED', 1007);
      assert.equal(getZlibConcurrencyStats().active, 0);
    });
  });

  it('fails with 1007 for a large final frame (payload and trailer written separately)', async () => {
    const client = codec('client');
    const bad = Buffer.concat([hex('07'), randomBytes(64 * 1024)]);
    await rejectsWith(inflate(client, bad, true), 'WS_ERR_INFLATE_FAILED', 1007);
    assert.equal(getZlibConcurrencyStats().active, 0);
  });

  it('fails with 1007 in a later fragment of a message', async () => {
    const { server, client } = pair();
    const good = await deflate(server, text(5000), false);
    assert.equal((await inflate(client, good, false)).length, 5000);
    await rejectsWith(inflate(client, hex('07 ff ff ff 00'), true), 'WS_ERR_INFLATE_FAILED', 1007);
  });

  it('fails with 1007 when the data needs a larger window than negotiated', async () => {
    // The server keeps a 512-byte window for the client's messages; this
    // client compresses with 32 KiB, so its second message refers 2000 bytes back.
    const server = codec('server', params({ clientMaxWindowBits: 9 }));
    const cheater = codec('client', params());
    const data = randomBytes(2000);
    assert.deepEqual(await inflate(server, await deflate(cheater, data)), data);
    await rejectsWith(inflate(server, await deflate(cheater, data)), 'WS_ERR_INFLATE_FAILED', 1007);
  });
});

describe('concurrency limiter', () => {
  it('runs at most `limit` operations at once across codecs, queueing the rest', async () => {
    setZlibConcurrencyLimit(2);
    getZlibConcurrencyStats(true);
    const data = randomBytes(256 * 1024);
    const codecs = Array.from({ length: 50 }, () => codec('server'));
    const activeSeen: number[] = [];
    const done = codecs.map(
      (c) =>
        new Promise<Buffer>((resolve, reject) => {
          c.deflate(data, true, (err, out) => {
            activeSeen.push(getZlibConcurrencyStats().active);
            if (err) reject(err);
            else resolve(out!);
          });
        }),
    );
    const submitted = getZlibConcurrencyStats();
    assert.equal(submitted.active, 2);
    assert.equal(submitted.queued, 48);
    const outputs = await Promise.all(done);
    assert.equal(activeSeen.length, 50);
    assert.ok(activeSeen.every((n) => n <= 2), `active seen: ${activeSeen.join(',')}`);
    const after = getZlibConcurrencyStats();
    assert.equal(after.peakActive, 2);
    assert.equal(after.active, 0);
    assert.equal(after.queued, 0);
    for (const out of outputs) assert.deepEqual(freshInflate(out), data);
  });

  it('is FIFO across codecs and round-robin between busy ones, in call order per codec', async () => {
    setZlibConcurrencyLimit(1);
    const a = codec('server');
    const b = codec('server');
    const c = codec('client');
    const order: string[] = [];
    const record = (name: string) =>
      new Promise<void>((resolve, reject) => {
        const target = name[0] === 'a' ? a : name[0] === 'b' ? b : c;
        target.deflate(Buffer.from(name), true, (err) => {
          if (err) reject(err);
          order.push(name);
          resolve();
        });
      });
    await Promise.all(['a1', 'a2', 'a3', 'b1', 'c1', 'b2'].map(record));
    // a1 runs first; then each codec goes back to the end of the queue between its operations.
    assert.deepEqual(order, ['a1', 'b1', 'c1', 'a2', 'b2', 'a3']);
  });

  it('keeps each codec in call order when calls are not awaited', async () => {
    const { server, client } = pair();
    const messages = Array.from({ length: 30 }, (_, i) => Buffer.from(`message ${i} `.repeat(i + 1)));
    const outputs: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      for (const m of messages) {
        server.deflate(m, true, (err, out) => {
          if (err) return reject(err);
          outputs.push(out!);
          if (outputs.length === messages.length) resolve();
        });
      }
    });
    const decoded: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      for (const out of outputs) {
        client.inflate(out, true, (err, data) => {
          if (err) return reject(err);
          decoded.push(data!);
          if (decoded.length === outputs.length) resolve();
        });
      }
    });
    assert.deepEqual(decoded, messages);
  });

  it('validates the limit; a codec option sets it process-wide', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => setZlibConcurrencyLimit(bad), RangeError);
    codec('server', params(), { concurrencyLimit: 3 });
    assert.equal(getZlibConcurrencyStats().limit, 3);
    setZlibConcurrencyLimit(Infinity);
    assert.equal(getZlibConcurrencyStats().limit, Infinity);
  });
});

describe('memory: lazy streams and close()', () => {
  it('creates streams on first use; keeps them with takeover, releases them per message without', async () => {
    await withStreams(async (streams) => {
      const keep = codec('server');
      assert.equal(streams.length, 0, 'nothing allocated before use');
      await deflate(keep, 'one');
      await deflate(keep, 'two');
      assert.equal(streams.length, 1);
      assert.equal(streams[0]!.stream.destroyed, false, 'the context is kept');
      keep.close();
      assert.equal(streams[0]!.stream.destroyed, true, 'close() releases it');

      streams.length = 0;
      const reset = codec('server', params({ serverNoContextTakeover: true, clientNoContextTakeover: true }));
      await deflate(reset, 'one', false);
      assert.equal(streams.length, 1);
      assert.equal(streams[0]!.stream.destroyed, false, 'kept until the message ends');
      await deflate(reset, 'one more', true);
      assert.equal(streams[0]!.stream.destroyed, true, 'released after the message');
      await inflate(reset, hex('f2 48 cd c9 c9 07 00'));
      await deflate(reset, 'two');
      assert.equal(streams.length, 3);
      assert.ok(streams.every((s) => s.stream.destroyed), 'nothing held between messages');
    });
  });

  it('close() with work in flight and queued: callbacks fail once, later, and the limiter drains', async () => {
    setZlibConcurrencyLimit(1);
    const busy = codec('server');
    const victim = codec('server');
    const big = randomBytes(2 * MiB);
    const busyDone = deflate(busy, big);
    const calls: string[] = [];
    const errors: string[] = [];
    for (let i = 0; i < 3; i++) {
      victim.deflate(Buffer.from(`queued ${i}`), true, (err) => {
        calls.push(`deflate ${i}`);
        if (err instanceof WebSocketError) errors.push(err.code);
      });
    }
    victim.inflate(hex('f2 48 cd c9 c9 07 00'), true, (err) => {
      calls.push('inflate');
      if (err) errors.push(err.code);
    });
    assert.equal(getZlibConcurrencyStats().queued, 2);
    victim.close();
    victim.close(); // idempotent
    assert.equal(calls.length, 0, 'no callback runs inside close()');
    await new Promise((resolve) => process.nextTick(resolve));
    assert.deepEqual(calls.sort(), ['deflate 0', 'deflate 1', 'deflate 2', 'inflate']);
    assert.deepEqual(errors, Array(4).fill('WS_ERR_CODEC_CLOSED'));
    assert.deepEqual(freshInflate(await busyDone), big);
    await settle();
    assert.equal(calls.length, 4, 'each callback ran exactly once');
    const stats = getZlibConcurrencyStats();
    assert.equal(stats.active, 0);
    assert.equal(stats.queued, 0);
    // The next codec in line still gets its turn.
    assert.deepEqual(freshInflate(await deflate(codec('server'), 'after')), Buffer.from('after'));
  });

  it('close() while zlib is working on the operation', async () => {
    await withStreams(async (streams) => {
      const compressed = await deflate(codec('server', params({ serverNoContextTakeover: true })), Buffer.alloc(8 * MiB));
      const server = codec('server');
      const client = codec('client');
      const results: [string, unknown, Buffer | undefined][] = [];
      server.deflate(randomBytes(4 * MiB), true, (err, out) => results.push(['deflate', err, out]));
      client.inflate(compressed, true, (err, out) => results.push(['inflate', err, out]));
      // Both operations are on the thread pool now (no callback can run before this tick ends).
      assert.equal(getZlibConcurrencyStats().active, 2);
      server.close();
      client.close();
      assert.equal(getZlibConcurrencyStats().active, 0, 'close() frees the slots at once');
      await settle();
      assert.equal(results.length, 2, 'each callback ran exactly once');
      for (const [, err, out] of results) {
        assert.equal((err as WebSocketError).code, 'WS_ERR_CODEC_CLOSED');
        assert.equal(out, undefined);
      }
      assert.ok(streams.every((s) => s.stream.destroyed));
      assert.equal(getZlibConcurrencyStats().active, 0);
      // Calls after close fail the same way, asynchronously.
      let sync = true;
      const late = new Promise<unknown>((resolve) => server.deflate(Buffer.from('x'), true, (err) => resolve([err, sync])));
      sync = false;
      const [err, wasSync] = (await late) as [WebSocketError, boolean];
      assert.equal(err.code, 'WS_ERR_CODEC_CLOSED');
      assert.equal(wasSync, false);
      assert.equal(server.isClosed, true);
    });
  });
});

describe('robustness', () => {
  it('a zlib stream destroyed by someone else fails its operation instead of hanging or returning partial data', async () => {
    await withStreams(async (streams) => {
      const server = codec('server');
      const client = codec('client');
      const results: [string, unknown, Buffer | undefined][] = [];
      server.deflate(randomBytes(8 * MiB), true, (err, out) => results.push(['deflate', err, out]));
      client.inflate(randomBytes(MiB), true, (err, out) => results.push(['inflate', err, out]));
      assert.equal(streams.length, 2);
      for (const s of streams) s.stream.destroy();
      await settle();
      assert.equal(results.length, 2);
      for (const [name, err, out] of results) {
        assert.ok(err instanceof WebSocketError, name);
        assert.equal(err.closeCode, 1011, name);
        assert.equal(out, undefined, name);
      }
      assert.equal(getZlibConcurrencyStats().active, 0);
      // The deflate side starts over with a new stream.
      assert.deepEqual(freshInflate(await deflate(server, 'next')), Buffer.from('next'));
    });
  });
});

describe('options', () => {
  it('exposes threshold (default 1024) and the role', () => {
    assert.equal(codec('server').threshold, DEFAULT_DEFLATE_THRESHOLD);
    assert.equal(DEFAULT_DEFLATE_THRESHOLD, 1024);
    const c = codec('client', params(), { threshold: 0 });
    assert.equal(c.threshold, 0);
    assert.equal(c.role, 'client');
  });

  it('rejects out-of-range settings', () => {
    const make = (p: Partial<NegotiatedDeflate>, extra: Partial<PerMessageDeflateCodecOptions> = {}) => () =>
      new PerMessageDeflateCodec({ role: 'server', params: params(p), maxPayload: 0, ...extra });
    assert.throws(make({ serverMaxWindowBits: 7 }), RangeError);
    assert.throws(make({ clientMaxWindowBits: 16 }), RangeError);
    assert.throws(make({}, { level: 10 }), RangeError);
    assert.throws(make({}, { memLevel: 0 }), RangeError);
    assert.throws(make({}, { maxPayload: -1 }), RangeError);
    assert.throws(make({}, { threshold: Number.NaN }), RangeError);
    assert.doesNotThrow(make({ serverMaxWindowBits: 8, clientMaxWindowBits: 8 }, { level: -1, memLevel: 9 }));
  });

  it('level changes the output; level 0 stores', async () => {
    const data = text(50_000);
    const stored = await deflate(codec('server', params(), { level: 0 }), data);
    const best = await deflate(codec('server', params(), { level: 9 }), data);
    assert.ok(stored.length > data.length);
    assert.ok(best.length < data.length / 10);
    assert.deepEqual(freshInflate(stored), data);
    assert.deepEqual(freshInflate(best), data);
  });
});

describe('idle compression contexts', () => {
  it('a context idle for idleReleaseMs is released; the peer (context takeover) still inflates what follows', async () => {
    await withStreams(async (streams) => {
      const { server, client } = pair(params(), { idleReleaseMs: 40 });
      const message = text(4000);
      const first = await deflate(server, message);
      const second = await deflate(server, message);
      assert.ok(second.length < first.length / 4, 'with the context kept, a repeat compresses to almost nothing');
      assert.deepEqual(await inflate(client, first), message);
      assert.deepEqual(await inflate(client, second), message);
      const deflaters = () => streams.filter((s) => s.direction === 'deflate' && s.role === 'server');
      assert.equal(deflaters().length, 1);
      const kept = deflaters()[0]!.stream;
      // The sweep runs every min(1 s, idleReleaseMs); wait until it released the stream.
      const deadline = Date.now() + 3000;
      while (!kept.destroyed && Date.now() < deadline) await sleep(20);
      assert.equal(kept.destroyed, true, 'the idle context was released');
      const third = await deflate(server, message);
      assert.equal(deflaters().length, 2, 'a fresh context for the next message');
      assert.ok(third.length > second.length * 4, 'it starts without history, so it is no longer tiny');
      assert.deepEqual(await inflate(client, third), message, 'the peer, still using context takeover, decodes it');
    });
  });

  it('not in the middle of a fragmented message, and never with idleReleaseMs 0', async () => {
    await withStreams(async (streams) => {
      const { server } = pair(params(), { idleReleaseMs: 40 });
      await deflate(server, text(2000), false); // first fragment: the message is still open
      const keptOpen = streams.find((s) => s.direction === 'deflate')!.stream;
      const { server: keeper } = pair(params(), { idleReleaseMs: 0 });
      await deflate(keeper, text(2000));
      const keptForever = streams.filter((s) => s.direction === 'deflate')[1]!.stream;
      await sleep(300);
      assert.equal(keptOpen.destroyed, false, 'a fragmented message keeps its context');
      assert.equal(keptForever.destroyed, false, 'idleReleaseMs 0 keeps the context');
      await deflate(server, text(10), true);
    });
  });
});
