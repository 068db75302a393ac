import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidHeaderError } from '../../../src/protocol/errors.js';
import { formatExtensions, isToken, parseExtensions, type ExtensionOffer } from '../../../src/protocol/extensions/header.js';

const ext = (name: string, ...params: [string, string | true][]): ExtensionOffer => ({
  name,
  params: params.map(([n, value]) => ({ name: n, value })),
});

describe('isToken', () => {
  it('accepts every tchar and refuses separators, controls and non-ASCII', () => {
    assert.equal(isToken("!#$%&'*+-.^_`|~09AZaz"), true);
    for (const bad of ['', ' ', 'a b', '"a"', 'a,b', 'a;b', 'a=b', 'a/b', '(a)', 'a:b', 'a\tb', 'a\x7f', 'é', '[a]', '{a}', 'a?', 'a@b', 'a\\b']) {
      assert.equal(isToken(bad), false, JSON.stringify(bad));
    }
  });
});

describe('parseExtensions: valid values', () => {
  const cases: { value: string; expected: ExtensionOffer[] }[] = [
    { value: 'permessage-deflate', expected: [ext('permessage-deflate')] },
    { value: 'permessage-deflate; client_max_window_bits', expected: [ext('permessage-deflate', ['client_max_window_bits', true])] },
    {
      value: 'permessage-deflate; client_max_window_bits=10; server_no_context_takeover',
      expected: [ext('permessage-deflate', ['client_max_window_bits', '10'], ['server_no_context_takeover', true])],
    },
    {
      value: 'permessage-deflate; server_max_window_bits=10, permessage-deflate',
      expected: [ext('permessage-deflate', ['server_max_window_bits', '10']), ext('permessage-deflate')],
    },
    { value: 'a, b, c', expected: [ext('a'), ext('b'), ext('c')] },
    { value: 'x;a=1;b', expected: [ext('x', ['a', '1'], ['b', true])] },
    { value: 'x ;  a = 1\t;\tb ,\ty', expected: [ext('x', ['a', '1'], ['b', true]), ext('y')] },
    { value: '  x  ', expected: [ext('x')] },
    { value: 'x; a="10"', expected: [ext('x', ['a', '10'])] },
    { value: 'x; a = "10" ; b="tok-en.1"', expected: [ext('x', ['a', '10'], ['b', 'tok-en.1'])] },
    { value: 'x; a="\\1\\0"', expected: [ext('x', ['a', '10'])] },
    { value: "x; a=!#$%&'*+-.^_`|~", expected: [ext('x', ['a', "!#$%&'*+-.^_`|~"])] },
    { value: ', x,, ,y ,', expected: [ext('x'), ext('y')] },
    { value: 'x; a; a=1; a=2', expected: [ext('x', ['a', true], ['a', '1'], ['a', '2'])] },
    { value: 'Permessage-Deflate; Server_Max_Window_Bits=10', expected: [ext('Permessage-Deflate', ['Server_Max_Window_Bits', '10'])] },
  ];
  for (const c of cases) {
    it(JSON.stringify(c.value), () => assert.deepEqual(parseExtensions(c.value), c.expected));
  }

  it('gives the same list for repeated headers joined with ", "', () => {
    const joined = ['permessage-deflate; client_max_window_bits', 'x-foo; a="b"'].join(', ');
    assert.deepEqual(parseExtensions(joined), [ext('permessage-deflate', ['client_max_window_bits', true]), ext('x-foo', ['a', 'b'])]);
  });
});

describe('parseExtensions: invalid values', () => {
  const cases = [
    '',
    '   ',
    ',',
    ' , ,',
    ';',
    'x;',
    'x; ',
    'x;;a',
    'x; =1',
    'x; a=',
    'x; a= ;b',
    'x; a=,y',
    'x y',
    'x; a b',
    'x; a=1 2',
    'x; a=b=c',
    'x, ;a',
    '"x"',
    'x; "a"=1',
    'x; a="',
    'x; a="10',
    'x; a="1\\',
    'x; a=""',
    'x; a="b c"',
    'x; a="b,c"',
    'x; a="1"2',
    'x; a="é"',
    'x; a="\x01"',
    'x; a="\\\x01"',
    'x; a=é',
    'é',
    'x/1',
    'x:y',
    'x\r\n',
    'x; a=(1)',
  ];
  for (const value of cases) {
    it(JSON.stringify(value), () => {
      assert.throws(
        () => parseExtensions(value),
        (err: unknown) => {
          assert.ok(err instanceof InvalidHeaderError);
          assert.equal(err.code, 'WS_ERR_INVALID_EXTENSION_HEADER');
          assert.equal(err.statusCode, 400);
          assert.match(err.message, /^Invalid Sec-WebSocket-Extensions header: /);
          return true;
        },
      );
    });
  }
});

describe('formatExtensions', () => {
  it('writes names, bare parameters and values, in order', () => {
    assert.equal(
      formatExtensions([ext('permessage-deflate', ['server_no_context_takeover', true], ['client_max_window_bits', '10']), ext('x-foo')]),
      'permessage-deflate; server_no_context_takeover; client_max_window_bits=10, x-foo',
    );
    assert.equal(formatExtensions([]), '');
  });

  it('round-trips through parseExtensions', () => {
    const values = ['a', 'a; b', 'a; b=1; b=2, a; c, d', "x; y=!#$%&'*+-.^_`|~"];
    for (const value of values) assert.equal(formatExtensions(parseExtensions(value)), value);
  });

  it('refuses names and values that are not tokens', () => {
    for (const bad of [[ext('')], [ext('a b')], [ext('a', ['', true])], [ext('a', ['b;c', true])], [ext('a', ['b', ''])], [ext('a', ['b', 'c d'])], [ext('a', ['b', '1\r\n'])]]) {
      assert.throws(() => formatExtensions(bad), TypeError, JSON.stringify(bad));
    }
  });
});
