/**
 * The realtime close-code table (src/wire/close-codes.ts): one
 * entry per `RealtimeCloseCode`, the same names and reconnect rule as
 * docs/close-codes.md, and the one table behind the SDK's `closeMeaning`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { closeMeaning as sdkCloseMeaning } from '../../../src/client/index.js';
import { closeMeaning, REALTIME_CLOSE_CODES, realtimeCloseCode } from '../../../src/wire/close-codes.js';
import { RealtimeCloseCode, shouldReconnect } from '../../../src/wire/messages.js';

describe('realtime close codes', () => {
  it('every RealtimeCloseCode has its name, a meaning and advice that agrees with shouldReconnect()', () => {
    for (const [name, code] of Object.entries(RealtimeCloseCode)) {
      const info = realtimeCloseCode(code);
      assert.ok(info, `${code} ${name} is not in the table`);
      assert.equal(info.name, name);
      assert.ok(info.meaning.length > 0);
      assert.equal(/^do not/.test(info.advice), !shouldReconnect(code), `${code}: advice "${info.advice}"`);
    }
    assert.equal(Object.keys(REALTIME_CLOSE_CODES).length, Object.keys(RealtimeCloseCode).length);
    assert.equal(realtimeCloseCode(1000), undefined);
    assert.equal(realtimeCloseCode(4999), undefined);
  });

  it('the table agrees with docs/close-codes.md (code, name, reconnect yes/no)', () => {
    const doc = readFileSync(new URL('../../../docs/close-codes.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## Realtime layer'));
    const rows = [...section.matchAll(/^\| (4\d{3}) \| (\w+) \|.*\| (yes|no)[^|]*\|$/gm)].map((m) => [Number(m[1]), m[2], m[3]]);
    assert.deepEqual(
      rows,
      Object.entries(REALTIME_CLOSE_CODES).map(([code, info]) => [Number(code), info.name, /^do not/.test(info.advice) ? 'no' : 'yes']),
    );
  });

  it('meanings: realtime codes by the table, other 4xxx by range, RFC 6455 codes from the protocol; the SDK uses the same function', () => {
    assert.equal(closeMeaning(4501), 'bad request: a message that is not JSON / MessagePack (do not reconnect)');
    assert.equal(closeMeaning(4001), 'no auth message in time (reconnect)');
    assert.equal(closeMeaning(4002), 'the token expired (reconnect with a new token)');
    assert.equal(closeMeaning(4100), 'application-defined code (reconnect)');
    assert.equal(closeMeaning(4600), 'application-defined code (do not reconnect)');
    assert.match(closeMeaning(1001), /going away/);
    assert.equal(sdkCloseMeaning, closeMeaning, 'the SDK has no second copy of the table');
  });
});
