/**
 * Channel names and patterns (src/wire/channel.ts): table-driven cases,
 * and fast-check properties: validation agrees with a reference built on
 * TextEncoder and regular expressions; matchesPattern agrees with a regex
 * translation of the pattern; PatternIndex.match agrees with filtering every
 * pattern through matchesPattern.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  isPattern,
  isValidChannel,
  isValidPattern,
  matchesPattern,
  MAX_CHANNEL_BYTES,
  PatternIndex,
} from '../../../src/wire/channel.js';

const long = (unit: string, n: number): string => unit.repeat(n);

describe('isValidChannel', () => {
  const valid: Array<[string, string]> = [
    ['one segment', 'a'],
    ['segments', 'chat/room-1/messages'],
    ['punctuation and spaces', 'a b/c.d:e_f@g$h'],
    ['non-ASCII', 'ünïcödé/频道'],
    ['4-byte characters', '😀/🎉'],
    ['a leading $ (no MQTT special case)', '$SYS/stats'],
    ['255 ASCII bytes', long('x', 255)],
    ['255 bytes of 2-byte characters and one ASCII', long('é', 127) + 'x'],
    ['255 bytes of 4-byte characters and three ASCII', long('😀', 63) + 'abc'],
  ];
  for (const [what, name] of valid) {
    it(`accepts ${what}`, () => assert.equal(isValidChannel(name), true));
  }

  const invalid: Array<[string, unknown]> = [
    ['the empty string', ''],
    ['a lone separator', '/'],
    ['a leading separator', '/a'],
    ['a trailing separator', 'a/'],
    ['an empty segment', 'a//b'],
    ['a + segment', 'a/+'],
    ['a # segment', 'a/#'],
    ['+ alone', '+'],
    ['+ inside a segment', 'a+b'],
    ['# inside a segment', 'a#'],
    ['256 ASCII bytes', long('x', 256)],
    ['256 bytes of 2-byte characters', long('é', 128)],
    ['256 bytes with 4-byte characters', long('😀', 63) + 'abcd'],
    ['NUL', 'a\u0000b'],
    ['a newline', 'a\nb'],
    ['a tab', 'a\tb'],
    ['DEL', 'a\u007f'],
    ['a C1 control (NEL)', 'a\u0085'],
    ['a lone high surrogate', 'a\ud800'],
    ['a lone high surrogate before a letter', '\ud800a'],
    ['a lone low surrogate', '\udc00a'],
    ['a number', 42],
    ['undefined', undefined],
  ];
  for (const [what, name] of invalid) {
    it(`rejects ${what}`, () => assert.equal(isValidChannel(name as string), false));
  }

  it('limits names to MAX_CHANNEL_BYTES = 255', () => assert.equal(MAX_CHANNEL_BYTES, 255));
});

describe('isPattern and isValidPattern', () => {
  const patterns: Array<[string, boolean, boolean]> = [
    // [name, isPattern, isValidPattern]
    ['+', true, true],
    ['#', true, true],
    ['a/+', true, true],
    ['a/#', true, true],
    ['+/+', true, true],
    ['+/#', true, true],
    ['a/+/c', true, true],
    ['+/b/#', true, true],
    ['a', false, false], // a channel, not a pattern
    ['a/b', false, false],
    ['a+', true, false],
    ['+a', true, false],
    ['++', true, false],
    ['a/b#', true, false],
    ['#/a', true, false],
    ['a/#/b', true, false],
    ['##', true, false],
    ['a//+', true, false],
    ['/#', true, false],
    ['+/', true, false],
    ['', false, false],
    ['a/+\n', true, false],
    [long('x', 254) + '/#', true, false], // 256 bytes
    [long('x', 253) + '/#', true, true], // 255 bytes
  ];
  for (const [name, pattern, valid] of patterns) {
    const shown = name.length > 20 ? `${name.slice(0, 8)}…(${name.length})` : JSON.stringify(name);
    it(`${shown}: isPattern ${pattern}, isValidPattern ${valid}`, () => {
      assert.equal(isPattern(name), pattern);
      assert.equal(isValidPattern(name), valid);
    });
  }
});

describe('matchesPattern', () => {
  const cases: Array<[string, string, boolean]> = [
    ['a/+', 'a/b', true],
    ['a/+', 'a', false],
    ['a/+', 'a/b/c', false],
    ['+', 'x', true],
    ['+', 'x/y', false],
    ['+/+', 'x/y', true],
    ['+/+', 'x', false],
    ['a/+/c', 'a/b/c', true],
    ['a/+/c', 'a/b/d', false],
    ['a/#', 'a', true], // zero trailing segments
    ['a/#', 'a/b', true],
    ['a/#', 'a/b/c', true],
    ['a/#', 'ab', false],
    ['a/#', 'b/a', false],
    ['#', 'x', true],
    ['#', 'x/y/z', true],
    ['+/#', 'x', true],
    ['+/#', 'x/y/z', true],
    ['a/+/#', 'a', false],
    ['a/+/#', 'a/b', true],
    ['a/b', 'a/b', true], // a plain name matches itself
    ['a/b', 'a/c', false],
    ['a/b', 'a/b/c', false],
    // invalid input never matches
    ['a/+', 'a/+', false],
    ['a+', 'a+', false],
    ['#', '', false],
    ['a/#/b', 'a/x/b', false],
    ['#', 'a//b', false],
  ];
  for (const [pattern, channel, expected] of cases) {
    it(`${pattern} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(channel)}`, () => {
      assert.equal(matchesPattern(pattern, channel), expected);
    });
  }
});

describe('PatternIndex', () => {
  it('matches values by pattern, once per (pattern, value) pair', () => {
    const index = new PatternIndex<string>();
    assert.equal(index.add('a/+', 's1'), true);
    assert.equal(index.add('a/+', 's1'), false); // the same pair again
    assert.equal(index.add('a/+', 's2'), true);
    assert.equal(index.add('a/#', 's1'), true);
    assert.equal(index.add('a/b', 's3'), true);
    assert.equal(index.add('#', 's4'), true);
    assert.equal(index.add('+/c', 's5'), true);
    assert.equal(index.size, 6);
    assert.deepEqual(index.match('a/b').sort(), ['s1', 's1', 's2', 's3', 's4']);
    assert.deepEqual(index.match('a').sort(), ['s1', 's4']);
    assert.deepEqual(index.match('a/c').sort(), ['s1', 's1', 's2', 's4', 's5']);
    assert.deepEqual(index.match('b/c/d').sort(), ['s4']);
    assert.deepEqual(index.match('a/+'), []); // not a channel
    assert.equal(index.hasMatch('a/b'), true);
    assert.equal(index.hasMatch('a/+'), false);
  });

  it('removes pairs and reports what it removed', () => {
    const index = new PatternIndex<number>();
    index.add('a/+/c', 1);
    index.add('a/+/c', 2);
    index.add('a/#', 3);
    assert.equal(index.remove('a/+/c', 1), true);
    assert.equal(index.remove('a/+/c', 1), false);
    assert.equal(index.remove('a/+', 2), false); // a prefix of a stored pattern
    assert.equal(index.remove('a/+/c/d', 2), false);
    assert.equal(index.remove('a/+/+', 2), false);
    assert.equal(index.remove('a+', 2), false); // invalid
    assert.deepEqual(index.match('a/b/c').sort(), [2, 3]);
    assert.equal(index.remove('a/+/c', 2), true);
    assert.equal(index.remove('a/#', 3), true);
    assert.equal(index.size, 0);
    assert.deepEqual(index.match('a/b/c'), []);
    assert.equal(index.hasMatch('a'), false);
    // Usable again after pruning.
    index.add('a/+/c', 4);
    assert.deepEqual(index.match('a/x/c'), [4]);
  });

  it('rejects invalid patterns with RT_ERR_INVALID_CHANNEL', () => {
    const index = new PatternIndex<number>();
    for (const bad of ['', 'a+', 'a/#/b', 'a//b', '/a']) {
      assert.throws(() => index.add(bad, 1), { name: 'TypeError', code: 'RT_ERR_INVALID_CHANNEL' });
    }
    assert.equal(index.size, 0);
  });

  it('clear() empties it', () => {
    const index = new PatternIndex<number>();
    index.add('#', 1);
    index.add('a/b', 2);
    index.clear();
    assert.equal(index.size, 0);
    assert.deepEqual(index.match('a/b'), []);
  });
});

// ---- properties ------------------------------------------------------------

/** The rules of isValidChannel, written differently. */
function referenceValidChannel(s: string): boolean {
  if (s.length === 0) return false;
  try {
    encodeURIComponent(s); // throws URIError on a lone surrogate
  } catch {
    return false;
  }
  if (new TextEncoder().encode(s).length > 255) return false;
  if (/[\u0000-\u001f\u007f-\u009f+#]/.test(s)) return false;
  return s.split('/').every((segment) => segment.length > 0);
}

/** A regular expression equivalent to a valid pattern. */
function patternRegex(pattern: string): RegExp {
  const segments = pattern.split('/');
  const last = segments[segments.length - 1];
  const body = (last === '#' ? segments.slice(0, -1) : segments)
    .map((s) => (s === '+' ? '[^/]+' : s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  if (last !== '#') return new RegExp(`^${body}$`);
  return segments.length === 1 ? /^.+$/ : new RegExp(`^${body}(?:/.*)?$`);
}

const nameChar = fc.constantFrom('a', 'b', '/', '/', '+', '#', 'é', '😀', '\u0000', '\u0085', '\u007f', '\ud800', '\udc00', ' ', '频');
const segment = fc.constantFrom('a', 'b', 'c');
const channel = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('/'));
const pattern = fc
  .tuple(fc.array(fc.constantFrom('a', 'b', 'c', '+', '+'), { minLength: 0, maxLength: 4 }), fc.boolean())
  .filter(([segments, hash]) => segments.length > 0 || hash)
  .map(([segments, hash]) => (hash ? [...segments, '#'] : segments).join('/'));

describe('properties', () => {
  it('isValidChannel agrees with a reference (TextEncoder, regex)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: nameChar, maxLength: 20 }),
          fc.string({ unit: fc.constantFrom('a', 'é', '😀', '/'), minLength: 60, maxLength: 260 }),
        ),
        (s) => {
          assert.equal(isValidChannel(s), referenceValidChannel(s));
          if (isValidChannel(s)) assert.equal(isPattern(s), false);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('matchesPattern agrees with a regex translation of the pattern', () => {
    fc.assert(
      fc.property(pattern, channel, (p, c) => {
        assert.equal(matchesPattern(p, c), patternRegex(p).test(c), `${p} vs ${c}`);
      }),
      { numRuns: 3000 },
    );
  });

  it('PatternIndex.match agrees with filtering every pattern through matchesPattern', () => {
    const op = fc.oneof(
      { weight: 3, arbitrary: fc.record({ add: fc.constant(true), pattern: fc.oneof(pattern, channel), value: fc.integer({ min: 0, max: 3 }) }) },
      { weight: 1, arbitrary: fc.record({ add: fc.constant(false), pattern: fc.oneof(pattern, channel), value: fc.integer({ min: 0, max: 3 }) }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), fc.array(channel, { minLength: 1, maxLength: 10 }), (ops, channels) => {
        const index = new PatternIndex<number>();
        const model = new Map<string, Set<number>>();
        for (const { add, pattern: p, value } of ops) {
          const values = model.get(p) ?? new Set<number>();
          const had = values.has(value);
          if (add) {
            assert.equal(index.add(p, value), !had);
            values.add(value);
            model.set(p, values);
          } else {
            assert.equal(index.remove(p, value), had);
            values.delete(value);
          }
        }
        let pairs = 0;
        for (const values of model.values()) pairs += values.size;
        assert.equal(index.size, pairs);
        for (const c of channels) {
          const expected: number[] = [];
          for (const [p, values] of model) if (matchesPattern(p, c)) expected.push(...values);
          const got = index.match(c);
          assert.deepEqual(
            [...got].sort((x, y) => x - y),
            expected.sort((x, y) => x - y),
            `channel ${c}`,
          );
          assert.equal(index.hasMatch(c), expected.length > 0);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
