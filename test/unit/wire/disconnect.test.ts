/**
 * The Disconnect value (src/wire/disconnect.ts): one named value per
 * realtime close code, a reason that fits a close frame from construction
 * on (cut like the transport cuts it, so a second cut changes nothing), and
 * an error that carries it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CloseCode, MAX_CLOSE_REASON_BYTES } from '../../../src/protocol/close-code.js';
import { truncateUtf8 } from '../../../src/protocol/connection.js';
import { clipCloseReason, Disconnect, DisconnectError } from '../../../src/wire/disconnect.js';
import { RealtimeCloseCode } from '../../../src/wire/messages.js';

describe('Disconnect', () => {
  it('has a named value for every RealtimeCloseCode, with the same name, and for 1001, 1009 and 1011', () => {
    const named = Disconnect as unknown as Record<string, Disconnect | undefined>;
    for (const [name, code] of Object.entries(RealtimeCloseCode)) {
      assert.equal(named[name]?.code, code, name);
      assert.ok(named[name]!.reason.length > 0, name);
    }
    assert.equal(Disconnect.Shutdown.code, CloseCode.GoingAway);
    assert.equal(Disconnect.MessageTooBig.code, CloseCode.MessageTooBig);
    assert.equal(Disconnect.InternalError.code, CloseCode.InternalError);
  });

  it('is immutable; with() keeps the code and takes another reason', () => {
    assert.throws(() => {
      (Disconnect.Kicked as { reason: string }).reason = 'changed';
    }, TypeError);
    const d = Disconnect.SlowConsumer.with('too many messages during recovery');
    assert.deepEqual([d.code, d.reason], [RealtimeCloseCode.SlowConsumer, 'too many messages during recovery']);
    assert.equal(Disconnect.SlowConsumer.reason, 'slow consumer');
  });

  it('clips the reason to 123 UTF-8 bytes at construction, never inside a character', () => {
    const reason = 'é'.repeat(100); // 200 bytes
    const d = new Disconnect(4500, reason);
    assert.equal(Buffer.byteLength(d.reason), 122);
    assert.equal(d.reason, 'é'.repeat(61));
    assert.equal(new Disconnect(4500, 'short').reason, 'short');
  });

  it('clips exactly as the transport does (so cutting twice changes nothing)', () => {
    // 1- to 4-byte characters and lone surrogates (which both encoders turn into U+FFFD).
    const unit = fc.oneof(fc.constantFrom('a', 'é', '€', '😀', '\ud800', '\udc00'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }));
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 130 }), (reason) => {
        const clipped = clipCloseReason(reason);
        assert.equal(clipped, truncateUtf8(reason, MAX_CLOSE_REASON_BYTES));
        assert.ok(Buffer.byteLength(clipped) <= MAX_CLOSE_REASON_BYTES);
        assert.equal(clipCloseReason(clipped), clipped);
      }),
      { numRuns: 500 },
    );
  });

  it('is thrown as a DisconnectError that carries it and names its closeCode', () => {
    const err = new DisconnectError(Disconnect.Forbidden.with('not yours'));
    assert.ok(err instanceof Error);
    assert.equal(err.name, 'DisconnectError');
    assert.equal(err.message, 'not yours');
    assert.equal(err.closeCode, RealtimeCloseCode.Forbidden);
    assert.equal(err.disconnect.reason, 'not yours');
  });
});
