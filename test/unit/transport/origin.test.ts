import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createOriginCheck, isOriginAllowed, normalizeOrigin, originEntryError } from '../../../src/transport/origin.js';

describe('normalizeOrigin', () => {
  it('lowercases scheme and host and drops the default port of the scheme', () => {
    assert.equal(normalizeOrigin('https://EXAMPLE.com:443'), 'https://example.com');
    assert.equal(normalizeOrigin('HTTPS://Example.Com'), 'https://example.com');
    assert.equal(normalizeOrigin('http://example.com:80'), 'http://example.com');
    assert.equal(normalizeOrigin('http://example.com:443'), 'http://example.com:443');
    assert.equal(normalizeOrigin('https://example.com:8443'), 'https://example.com:8443');
    assert.equal(normalizeOrigin('http://[::1]:3000'), 'http://[::1]:3000');
    assert.equal(normalizeOrigin('http://127.0.0.1'), 'http://127.0.0.1');
  });

  it('returns null for the opaque origin and for what is not an origin', () => {
    assert.equal(normalizeOrigin('null'), null);
    assert.equal(normalizeOrigin('garbage'), null);
    assert.equal(normalizeOrigin(''), null);
    assert.equal(normalizeOrigin('file:///etc/passwd'), null);
    assert.equal(normalizeOrigin('chrome-extension://abcdef'), null);
  });
});

describe('originEntryError', () => {
  it('accepts "*" and bare http(s) origins', () => {
    for (const entry of ['*', 'https://app.example.com', 'http://localhost:3000', 'https://EXAMPLE.com:443']) {
      assert.equal(originEntryError(entry), null, entry);
    }
  });

  it('refuses anything else, with a reason', () => {
    assert.match(originEntryError('app.example.com')!, /not an origin/);
    assert.match(originEntryError('ws://app.example.com')!, /only http: and https:/);
    assert.match(originEntryError('https://app.example.com/')!, /did you mean "https:\/\/app.example.com"/);
    assert.match(originEntryError('https://app.example.com/x?y')!, /no path, query or credentials/);
    assert.match(originEntryError('https://user@app.example.com')!, /no path, query or credentials/);
    assert.match(originEntryError('null')!, /not an origin/);
    assert.match(originEntryError(42)!, /expected a string/);
  });
});

describe('createOriginCheck', () => {
  it('allows requests without an Origin header whatever the list', () => {
    assert.equal(createOriginCheck([])(undefined, 'example.com'), true);
    assert.equal(createOriginCheck(['https://app.example.com'])(undefined, undefined), true);
  });

  it('matches listed origins after normalizing both sides', () => {
    const check = createOriginCheck(['https://EXAMPLE.com:443', 'http://localhost:3000']);
    assert.equal(check('https://example.com', 'api.test'), true);
    assert.equal(check('https://Example.com:443', 'api.test'), true);
    assert.equal(check('http://localhost:3000', 'api.test'), true);
    assert.equal(check('http://example.com', 'api.test'), false);
    assert.equal(check('https://example.com:8443', 'api.test'), false);
    assert.equal(check('http://localhost:3001', 'api.test'), false);
    assert.equal(check('https://sub.example.com', 'api.test'), false);
  });

  it("allows the server's own origin, read from Host with the page's scheme", () => {
    const check = createOriginCheck([]);
    assert.equal(check('https://example.com', 'example.com'), true);
    assert.equal(check('https://example.com', 'example.com:443'), true);
    assert.equal(check('http://EXAMPLE.com:8080', 'example.com:8080'), true);
    assert.equal(check('http://127.0.0.1:8080', '127.0.0.1:8080'), true);
    assert.equal(check('http://example.com:8081', 'example.com:8080'), false);
    assert.equal(check('https://evil.example', 'example.com'), false);
    assert.equal(check('https://example.com', undefined), false);
    assert.equal(check('https://example.com', ''), false);
    assert.equal(check('https://example.com', 'not a host'), false);
  });

  it("'*' allows every origin, null included; without it null and garbage are refused", () => {
    const any = createOriginCheck(['*']);
    assert.equal(any('https://anyone.example', 'api.test'), true);
    assert.equal(any('null', 'api.test'), true);
    const list = createOriginCheck(['https://app.example.com']);
    assert.equal(list('null', 'api.test'), false);
    assert.equal(list('garbage', 'api.test'), false);
  });

  it('throws a TypeError naming the first bad entry', () => {
    assert.throws(() => createOriginCheck(['https://ok.example', 'ok.example']), {
      name: 'TypeError',
      message: /^allowedOrigins\[1\]: not an origin/,
    });
  });
});

describe('isOriginAllowed', () => {
  it('is the compiled check applied once', () => {
    assert.equal(isOriginAllowed(['https://APP.example.com:443'], 'https://app.example.com', 'api.example.com'), true);
    assert.equal(isOriginAllowed([], 'https://api.example.com', 'api.example.com'), true);
    assert.equal(isOriginAllowed([], 'https://app.example.com', 'api.example.com'), false);
  });
});
