import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isUtf8, Utf8Validator } from '../../../src/protocol/utf8.js';
import { hex } from './helpers.js';

const VALID: [string, string][] = [
  ['empty', ''],
  ['ASCII', '48 65 6c 6c 6f 00 7f'],
  ['U+0080 (first 2-byte)', 'c2 80'],
  ['U+07FF (last 2-byte)', 'df bf'],
  ['U+0800 (first 3-byte)', 'e0 a0 80'],
  ['U+D7FF (below the surrogates)', 'ed 9f bf'],
  ['U+E000 (above the surrogates)', 'ee 80 80'],
  ['U+FFFF', 'ef bf bf'],
  ['U+10000 (first 4-byte)', 'f0 90 80 80'],
  ['U+10FFFF (last code point)', 'f4 8f bf bf'],
  ['mixed', '7a c3 a9 e2 82 ac f0 9f 98 80 7a'],
];

const INVALID: [string, string][] = [
  ['stray continuation', '80'],
  ['stray continuation after ASCII', '41 bf'],
  ['overlong 2-byte C0', 'c0 80'],
  ['overlong 2-byte C1', 'c1 bf'],
  ['overlong 3-byte', 'e0 80 80'],
  ['overlong 3-byte (U+07FF)', 'e0 9f bf'],
  ['overlong 4-byte', 'f0 80 80 80'],
  ['overlong 4-byte (U+FFFF)', 'f0 8f bf bf'],
  ['high surrogate U+D800', 'ed a0 80'],
  ['low surrogate U+DFFF', 'ed bf bf'],
  ['surrogate pair encoded as CESU-8', 'ed a0 bd ed b2 a9'],
  ['U+110000', 'f4 90 80 80'],
  ['F5 lead', 'f5 80 80 80'],
  ['FF', 'ff'],
  ['FE', 'fe'],
  ['lead followed by ASCII', 'c3 41'],
  ['3-byte lead then ASCII', 'e2 82 41'],
  ['too many continuations', 'c3 a9 a9'],
];

const TRUNCATED: [string, string][] = [
  ['2-byte lead alone', 'c3'],
  ['3-byte missing one', 'e2 82'],
  ['4-byte missing one', 'f0 9f 98'],
  ['4-byte lead alone', 'f4'],
];

/** Index of the byte at which no valid continuation exists anymore (-1 if none). */
function validateByteByByte(bytes: Buffer): number {
  const v = new Utf8Validator();
  for (let i = 0; i < bytes.length; i++) if (!v.write(bytes.subarray(i, i + 1))) return i;
  return -1;
}

describe('Utf8Validator', () => {
  for (const [name, text] of VALID) {
    it(`accepts ${name}`, () => {
      const bytes = hex(text);
      const v = new Utf8Validator();
      assert.equal(v.write(bytes), true);
      assert.equal(v.end(), true);
      assert.equal(validateByteByByte(bytes), -1);
      assert.equal(isUtf8(bytes), true);
    });
  }

  for (const [name, text] of INVALID) {
    it(`rejects ${name}`, () => {
      const bytes = hex(text);
      assert.equal(new Utf8Validator().write(bytes), false);
      assert.notEqual(validateByteByByte(bytes), -1);
      assert.equal(isUtf8(bytes), false);
    });
  }

  for (const [name, text] of TRUNCATED) {
    it(`accepts the pieces of ${name} but not the end`, () => {
      const v = new Utf8Validator();
      assert.equal(v.write(hex(text)), true);
      assert.equal(v.end(), false);
    });
  }

  it('fails on the exact byte that cannot continue, byte by byte', () => {
    assert.equal(validateByteByByte(hex('41 42 f4 90 80 80')), 3); // F4 is fine, 90 is not
    assert.equal(validateByteByByte(hex('41 ed a0 80')), 2); // ED then A0: a surrogate
    assert.equal(validateByteByByte(hex('e0 80 80')), 1);
    assert.equal(validateByteByByte(hex('f0 8f bf bf')), 1);
    assert.equal(validateByteByByte(hex('c0 80')), 0);
    assert.equal(validateByteByByte(hex('f5')), 0);
    assert.equal(validateByteByByte(hex('c3 a9 a9')), 2);
  });

  it('fails fast on a sequence split across writes (F4 | 90)', () => {
    const v = new Utf8Validator();
    assert.equal(v.write(hex('48 69 f4')), true);
    assert.equal(v.write(hex('90 80 80')), false);
  });

  it('rejects an invalid second byte at the end of a larger chunk (before the rest arrives)', () => {
    const lead = Buffer.alloc(100, 0x61);
    for (const tail of ['e0 80', 'ed a0', 'f0 80', 'f4 90', 'f0 90 c0']) {
      assert.equal(new Utf8Validator().write(Buffer.concat([lead, hex(tail)])), false, tail);
    }
  });

  it('accepts valid multi-byte text split at every position', () => {
    const bytes = Buffer.from('aé€😀z\u{10FFFF}\u0800ß');
    for (let cut = 0; cut <= bytes.length; cut++) {
      const v = new Utf8Validator();
      assert.equal(v.write(bytes.subarray(0, cut)), true, `cut ${cut}`);
      assert.equal(v.write(bytes.subarray(cut)), true, `cut ${cut}`);
      assert.equal(v.end(), true, `cut ${cut}`);
    }
    for (let a = 0; a <= bytes.length; a++) {
      for (let b = a; b <= bytes.length; b++) {
        const v = new Utf8Validator();
        const ok = v.write(bytes.subarray(0, a)) && v.write(bytes.subarray(a, b)) && v.write(bytes.subarray(b));
        assert.equal(ok && v.end(), true, `cuts ${a} ${b}`);
      }
    }
  });

  it('stays failed after a rejection until reset', () => {
    const v = new Utf8Validator();
    assert.equal(v.write(hex('ff')), false);
    assert.equal(v.write(hex('41')), false);
    v.reset();
    assert.equal(v.write(hex('41')), true);
    assert.equal(v.end(), true);
  });

  it('end() resets for the next message', () => {
    const v = new Utf8Validator();
    assert.equal(v.write(hex('e2 82')), true);
    assert.equal(v.end(), false);
    assert.equal(v.write(hex('41')), true);
    assert.equal(v.end(), true);
  });

  it('accepts empty writes in any state', () => {
    const v = new Utf8Validator();
    assert.equal(v.write(hex('e2')), true);
    assert.equal(v.write(Buffer.alloc(0)), true);
    assert.equal(v.write(hex('82')), true);
    assert.equal(v.write(Buffer.alloc(0)), true);
    assert.equal(v.write(hex('ac')), true);
    assert.equal(v.end(), true);
  });
});
