// The HS* fast path (src/realtime/hmac-jwt.ts) against jose, the reference:
// whatever the fast path accepts, jose accepts with the same claims; the
// usual tokens do take the fast path; everything unusual falls through (null).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { verifyHmacJwt, type HmacVerifyOptions } from '../../../src/realtime/hmac-jwt.js';

const SECRET = new TextEncoder().encode('a-test-secret-that-is-at-least-32-bytes-long');
const NOW = 1_700_000_000_000;
const nowS = NOW / 1000;
const OPTIONS: HmacVerifyOptions = { secret: SECRET, algorithms: ['HS256', 'HS384', 'HS512'], clockTolerance: 5 };
const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** A token with any header and payload text, correctly signed (so only the checks under test can fail). */
function forge(header: unknown, payload: unknown, hash = 'sha256', secret: Uint8Array = SECRET): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac(hash, secret).update(input).digest('base64url')}`;
}

/** jose's answer with the authenticator's options: the claims or null. */
async function joseVerify(token: string, options: HmacVerifyOptions = OPTIONS): Promise<JWTPayload | null> {
  try {
    const { payload } = await jwtVerify(token, SECRET, {
      algorithms: [...options.algorithms],
      issuer: options.issuer,
      audience: options.audience,
      clockTolerance: options.clockTolerance,
      requiredClaims: ['exp'],
      currentDate: new Date(NOW),
    });
    return payload;
  } catch {
    return null;
  }
}

/** The one-sided contract: the fast path accepts only what jose accepts, with the same claims. */
async function agrees(token: string, options: HmacVerifyOptions = OPTIONS): Promise<Record<string, unknown> | null> {
  const fast = verifyHmacJwt(token, options, NOW);
  if (fast !== null) assert.deepEqual(fast, await joseVerify(token, options), `fast path accepted what jose refuses: ${token}`);
  return fast;
}

describe('verifyHmacJwt (HS* fast path)', () => {
  it('accepts tokens signed by jose with HS256, HS384 and HS512, with the claims jose gives', async () => {
    for (const alg of ['HS256', 'HS384', 'HS512']) {
      const token = await new SignJWT({ channels: { subscribe: ['a/#'] }, info: { n: 1 } })
        .setProtectedHeader({ alg, typ: 'JWT', kid: 'k1' })
        .setSubject('alice')
        .setIssuedAt(nowS)
        .setNotBefore(nowS)
        .setExpirationTime(nowS + 60)
        .sign(SECRET);
      const claims = await agrees(token);
      assert.ok(claims, alg);
      assert.equal(claims.sub, 'alice');
    }
  });

  it('checks iss and aud when configured', async () => {
    const opts = { ...OPTIONS, issuer: 'me', audience: 'rt' };
    assert.ok(await agrees(forge({ alg: 'HS256' }, { exp: nowS + 60, iss: 'me', aud: 'rt' }), opts));
    assert.ok(await agrees(forge({ alg: 'HS256' }, { exp: nowS + 60, iss: 'me', aud: ['x', 'rt'] }), opts));
    for (const claims of [{ iss: 'you', aud: 'rt' }, { aud: 'rt' }, { iss: 'me', aud: 'x' }, { iss: 'me' }, { iss: 'me', aud: ['x'] }]) {
      assert.equal(await agrees(forge({ alg: 'HS256' }, { exp: nowS + 60, ...claims }), opts), null, JSON.stringify(claims));
    }
  });

  it('gives null (jose decides) for a bad signature, another secret, a wrong algorithm and alg none', async () => {
    const good = forge({ alg: 'HS256' }, { exp: nowS + 60 });
    const [h, p, s] = good.split('.');
    const flipped = s!.slice(0, -2) + (s!.at(-2) === 'A' ? 'B' : 'A') + s!.at(-1);
    assert.equal(await agrees(`${h}.${p}.${flipped}`), null);
    assert.equal(await agrees(forge({ alg: 'HS256' }, { exp: nowS + 60 }, 'sha256', new TextEncoder().encode('x'.repeat(40)))), null);
    assert.equal(await agrees(forge({ alg: 'HS384' }, { exp: nowS + 60 }, 'sha256')), null);
    assert.equal(await agrees(forge({ alg: 'HS256' }, { exp: nowS + 60 }), { ...OPTIONS, algorithms: ['HS512'] }), null);
    assert.equal(await agrees(`${b64({ alg: 'none' })}.${p}.`), null);
    assert.equal(await agrees(`${h}.${p}`), null);
    assert.equal(await agrees(`${h}.${p}.${s}.x`), null);
    assert.equal(await agrees(`${h}.${p}.${s}=`), null);
  });

  it('gives null for unusual headers (crit, b64, jku, a non-string typ), which jose judges', async () => {
    for (const header of [
      { alg: 'HS256', crit: ['b64'], b64: false },
      { alg: 'HS256', b64: true },
      { alg: 'HS256', jku: 'https://x' },
      { alg: 'HS256', typ: 1 },
      ['HS256'],
      'HS256',
    ]) {
      assert.equal(verifyHmacJwt(forge(header, { exp: nowS + 60 }), OPTIONS, NOW), null, JSON.stringify(header));
    }
  });

  it('applies exp, nbf and iat as jose does, with the 5 s tolerance at both edges', async () => {
    const cases: Array<[Record<string, unknown>, boolean]> = [
      [{ exp: nowS + 60 }, true],
      [{ exp: nowS - 4 }, true],
      [{ exp: nowS - 5 }, false],
      [{ exp: nowS - 3600 }, false],
      [{}, false],
      [{ exp: String(nowS + 60) }, false],
      [{ exp: nowS + 60, nbf: nowS + 5 }, true],
      [{ exp: nowS + 60, nbf: nowS + 6 }, false],
      [{ exp: nowS + 60, nbf: 'soon' }, false],
      [{ exp: nowS + 60, iat: 'then' }, false],
      [{ exp: nowS + 60, iat: nowS + 3600 }, true],
    ];
    for (const [claims, accepted] of cases) {
      const token = forge({ alg: 'HS256' }, claims);
      assert.equal((await agrees(token)) !== null, accepted, JSON.stringify(claims));
      assert.equal((await joseVerify(token)) !== null, accepted, `jose: ${JSON.stringify(claims)}`);
    }
  });

  it('gives null for claims that are not a UTF-8 JSON object', async () => {
    for (const payload of ['[1]', 'null', '"x"', '{"exp":1', '\ufeff{"exp":9999999999}']) {
      assert.equal(await agrees(forge({ alg: 'HS256' }, payload)), null, payload);
    }
    const input = `${b64({ alg: 'HS256' })}.${Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url')}`;
    const token = `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
    assert.equal(await agrees(token), null);
  });

  it('never accepts what jose refuses, for any edit of a valid token (property)', async () => {
    const valid = forge({ alg: 'HS256', typ: 'JWT' }, { sub: 'u', exp: nowS + 60, nbf: nowS - 1 });
    await fc.assert(
      fc.asyncProperty(fc.nat(valid.length - 1), fc.string({ maxLength: 3 }), fc.nat(3), async (at, insert, cut) => {
        await agrees(valid.slice(0, at) + insert + valid.slice(at + cut));
      }),
      { numRuns: 300 },
    );
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.constantFrom('alg', 'typ', 'kid', 'crit', 'b64', 'x'), fc.jsonValue()), fc.jsonValue(), async (header, payload) => {
        await agrees(forge(header, payload));
      }),
      { numRuns: 300 },
    );
  });
});
