import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Connection } from '../../../src/protocol/connection.js';
import type { PerMessageDeflateCodec } from '../../../src/transport/deflate.js';
import { Sender, takeWriteCallback, type SenderHost } from '../../../src/transport/sender.js';

/** A Connection that records what it was asked to write, and which write callback was current then. */
function setup() {
  const written: string[] = [];
  const record = (what: string) => {
    written.push(what);
    takeWriteCallback()?.(null);
  };
  const conn = {
    closeSent: false,
    sendData: (data: Buffer | string, _isBinary: boolean, _fin: boolean, rsv1: boolean) => record(`data:${String(data)}${rsv1 ? ':z' : ''}`),
    sendPrepared: (frame: Buffer) => record(`frame:${String(frame)}`),
    ping: (data: Buffer) => record(`ping:${String(data)}`),
    pong: (data: Buffer) => record(`pong:${String(data)}`),
    close: (code: number | undefined, reason: Buffer | string) => {
      conn.closeSent = true;
      record(`close:${code}:${String(reason)}`);
    },
    fail: () => {},
  };
  const pending: Array<() => void> = [];
  const codec = {
    deflate: (data: Buffer, _fin: boolean, cb: (err: Error | null, out?: Buffer) => void) => pending.push(() => cb(null, Buffer.from(`<${data}>`))),
  };
  const events: string[] = [];
  const host: SenderHost = {
    notOpenError: () => new Error('not open'),
    isClosed: () => false,
    answerClose: () => record('close-echo'),
    onFlushed: () => events.push('flushed'),
    end: () => events.push('end'),
  };
  const sender = new Sender(conn as unknown as Connection, codec as unknown as PerMessageDeflateCodec, host);
  return { sender, written, pending, events };
}

describe('Sender', () => {
  it('writes at once while nothing waits, each op with its own callback', () => {
    const { sender, written } = setup();
    const done: string[] = [];
    sender.send({ kind: 'data', data: 'a', isBinary: false, fin: true, compress: false, cb: () => done.push('a') });
    sender.send({ kind: 'ping', data: Buffer.from('p'), cb: () => done.push('p') });
    sender.send({ kind: 'frame', data: Buffer.from('f'), cb: () => done.push('f') });
    assert.deepEqual(written, ['data:a', 'ping:p', 'frame:f']);
    assert.deepEqual(done, ['a', 'p', 'f']);
    assert.equal(sender.busy, false);
  });

  it('queues everything behind a message in zlib, in order, and counts the queued bytes', () => {
    const { sender, written, pending, events } = setup();
    sender.send({ kind: 'data', data: 'big', isBinary: false, fin: true, compress: true });
    sender.send({ kind: 'pong', data: Buffer.from('pp') });
    sender.send({ kind: 'data', data: 'small', isBinary: false, fin: true, compress: false });
    sender.send({ kind: 'close', code: 1000, reason: 'bye' });
    sender.send({ kind: 'close-echo' });
    assert.deepEqual(written, []);
    assert.equal(sender.busy, true);
    assert.equal(sender.queuedBytes, 3 + 2 + 5 + 3);
    pending.shift()!();
    assert.deepEqual(written, ['data:<big>:z', 'pong:pp', 'data:small', 'close:1000:bye']);
    // The close went out: what follows it is not sent.
    assert.equal(sender.queuedBytes, 0);
    assert.deepEqual(events, ['flushed']);
  });

  it('fail() hands every queued callback the error on a later tick', async () => {
    const { sender } = setup();
    const errors: string[] = [];
    sender.send({ kind: 'data', data: 'big', isBinary: false, fin: true, compress: true, cb: (e) => errors.push(`big:${e?.message}`) });
    sender.send({ kind: 'ping', data: Buffer.alloc(0), cb: (e) => errors.push(`ping:${e?.message}`) });
    sender.fail(new Error('gone'));
    assert.deepEqual(errors, []);
    await new Promise((r) => process.nextTick(r));
    assert.deepEqual(errors, ['ping:gone']);
  });

  it('endWhenFlushed() ends at once when idle, else once the queue empties', () => {
    const idle = setup();
    idle.sender.endWhenFlushed();
    assert.deepEqual(idle.events, ['end']);
    const busy = setup();
    busy.sender.send({ kind: 'data', data: 'big', isBinary: false, fin: true, compress: true });
    busy.sender.endWhenFlushed();
    assert.deepEqual(busy.events, []);
    busy.pending.shift()!();
    assert.deepEqual(busy.events, ['end', 'flushed']);
  });
});
