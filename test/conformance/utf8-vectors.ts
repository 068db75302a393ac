/**
 * UTF-8 test vectors in the categories of Markus Kuhn's "UTF-8 decoder
 * capability and stress test" (the source of Autobahn's cases 6.5-6.23),
 * written out here as hex. Validity follows RFC 3629 / Unicode Table 3-7:
 * no overlongs, no surrogates, nothing above U+10FFFF, no 5- or 6-byte
 * forms; noncharacters and specials are valid.
 */

export interface Utf8Vector {
  bytes: Buffer;
  valid: boolean;
}

export interface Utf8Category {
  title: string;
  vectors: Utf8Vector[];
}

const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');
const valid = (h: string): Utf8Vector => ({ bytes: hex(h), valid: true });
const invalid = (h: string): Utf8Vector => ({ bytes: hex(h), valid: false });
const withText = (before: string, h: string, after: string): Buffer =>
  Buffer.concat([Buffer.from(before), hex(h), Buffer.from(after)]);

/** "κόσμε" (Greek "cosmos"), Kuhn's sample word: 11 bytes, code points of 2 and 3 bytes. */
export const KOSME = hex('ce ba e1 bd b9 cf 83 ce bc ce b5');

/** Whether `bytes` is complete, valid UTF-8 (the oracle, independent of src/). */
export function isValidUtf8(bytes: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** Whether `bytes` cannot even begin valid UTF-8 (an error is visible before the end of the input). */
export function isInvalidPrefix(bytes: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
    return false;
  } catch {
    return true;
  }
}

function range(from: number, to: number, each: (b: number) => number[]): Buffer {
  const out: number[] = [];
  for (let b = from; b <= to; b++) out.push(...each(b));
  return Buffer.from(out);
}

function codePoint(cp: number): Buffer {
  return Buffer.from(String.fromCodePoint(cp));
}

/** Kuhn's 3.3: sequences of 2 to 6 bytes with their last continuation byte missing. */
const INCOMPLETE = [
  'c0',
  'e0 80',
  'f0 80 80',
  'f8 80 80 80',
  'fc 80 80 80 80',
  'df',
  'ef bf',
  'f7 bf bf',
  'fb bf bf bf',
  'fd bf bf bf bf',
];

export const UTF8_CATEGORIES: Utf8Category[] = [
  {
    title: 'valid samples with code points of every length',
    vectors: [
      { bytes: withText('hello', '24', 'world'), valid: true },
      { bytes: withText('hello', 'c2 a2', 'world'), valid: true },
      { bytes: withText('hello', 'e2 82 ac', 'world'), valid: true },
      { bytes: withText('hello', 'f0 a4 ad a2', 'world'), valid: true },
      { bytes: KOSME, valid: true },
    ],
  },
  {
    title: 'every prefix of a multi-byte sample',
    vectors: Array.from({ length: KOSME.length }, (_, i) => {
      const bytes = KOSME.subarray(0, i + 1);
      return { bytes, valid: isValidUtf8(bytes) };
    }),
  },
  {
    title: 'first code point of each length',
    vectors: [valid('00'), valid('c2 80'), valid('e0 a0 80'), valid('f0 90 80 80')],
  },
  {
    title: 'first sequences of 5 and 6 bytes',
    vectors: [invalid('f8 88 80 80 80'), invalid('fc 84 80 80 80 80')],
  },
  {
    title: 'last code point of each length',
    vectors: [valid('7f'), valid('df bf'), valid('ef bf bf'), valid('f4 8f bf bf')],
  },
  {
    title: 'last sequences of 4, 5 and 6 bytes (beyond U+10FFFF)',
    vectors: [invalid('f7 bf bf bf'), invalid('fb bf bf bf bf'), invalid('fd bf bf bf bf bf')],
  },
  {
    title: 'other boundaries (U+D7FF, U+E000, U+FFFD, U+10FFFF, U+110000)',
    vectors: [valid('ed 9f bf'), valid('ee 80 80'), valid('ef bf bd'), valid('f4 8f bf bf'), invalid('f4 90 80 80')],
  },
  {
    title: 'unexpected continuation bytes',
    vectors: [
      invalid('80'),
      invalid('bf'),
      invalid('80 bf'),
      invalid('80 bf 80'),
      invalid('80 bf 80 bf'),
      invalid('80 bf 80 bf 80'),
      invalid('80 bf 80 bf 80 bf'),
      { bytes: range(0x80, 0xbf, (b) => [b]), valid: false },
    ],
  },
  {
    title: 'lonely start bytes, each followed by a space',
    vectors: [
      { bytes: range(0xc0, 0xdf, (b) => [b, 0x20]), valid: false },
      { bytes: range(0xe0, 0xef, (b) => [b, 0x20]), valid: false },
      { bytes: range(0xf0, 0xf7, (b) => [b, 0x20]), valid: false },
      { bytes: range(0xf8, 0xfb, (b) => [b, 0x20]), valid: false },
      { bytes: range(0xfc, 0xfd, (b) => [b, 0x20]), valid: false },
    ],
  },
  {
    title: 'sequences with the last continuation byte missing',
    vectors: INCOMPLETE.map((h) => invalid(h)),
  },
  {
    title: 'all of those incomplete sequences in a row',
    vectors: [invalid(INCOMPLETE.join(''))],
  },
  {
    title: 'impossible bytes',
    vectors: [invalid('fe'), invalid('ff'), invalid('fe fe ff ff')],
  },
  {
    title: 'overlong forms of "/"',
    vectors: [
      invalid('c0 af'),
      invalid('e0 80 af'),
      invalid('f0 80 80 af'),
      invalid('f8 80 80 80 af'),
      invalid('fc 80 80 80 80 af'),
    ],
  },
  {
    title: 'largest overlong forms',
    vectors: [
      invalid('c1 bf'),
      invalid('e0 9f bf'),
      invalid('f0 8f bf bf'),
      invalid('f8 87 bf bf bf'),
      invalid('fc 83 bf bf bf bf'),
    ],
  },
  {
    title: 'overlong forms of NUL',
    vectors: [
      invalid('c0 80'),
      invalid('e0 80 80'),
      invalid('f0 80 80 80'),
      invalid('f8 80 80 80 80'),
      invalid('fc 80 80 80 80 80'),
    ],
  },
  {
    title: 'single UTF-16 surrogates',
    vectors: [
      invalid('ed a0 80'),
      invalid('ed ad bf'),
      invalid('ed ae 80'),
      invalid('ed af bf'),
      invalid('ed b0 80'),
      invalid('ed be 80'),
      invalid('ed bf bf'),
    ],
  },
  {
    title: 'paired UTF-16 surrogates',
    vectors: ['ed a0 80', 'ed ad bf', 'ed ae 80', 'ed af bf'].flatMap((high) =>
      ['ed b0 80', 'ed bf bf'].map((low) => invalid(`${high} ${low}`)),
    ),
  },
  {
    title: 'noncharacters (valid UTF-8)',
    vectors: [
      valid('ef bf be'),
      valid('ef bf bf'),
      ...Array.from({ length: 16 }, (_, i) => i + 1).flatMap((plane) => [
        { bytes: codePoint(plane * 0x10000 + 0xfffe), valid: true },
        { bytes: codePoint(plane * 0x10000 + 0xffff), valid: true },
      ]),
    ],
  },
  {
    title: 'specials U+FFF9..U+FFFF (valid UTF-8)',
    vectors: Array.from({ length: 7 }, (_, i) => ({ bytes: codePoint(0xfff9 + i), valid: true })),
  },
];

// The table must agree with the oracle; a typo here would test nothing.
for (const category of UTF8_CATEGORIES) {
  for (const v of category.vectors) {
    if (isValidUtf8(v.bytes) !== v.valid) {
      throw new Error(`utf8-vectors: ${v.bytes.toString('hex')} in "${category.title}" is marked ${v.valid ? 'valid' : 'invalid'}`);
    }
  }
}
