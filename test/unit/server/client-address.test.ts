/** Which address a connection is counted under, behind (trusted or not) proxies. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clientAddress, isLoopback, parseProxyEntry, trustedProxyList } from '../../../src/server/client-address.js';

describe('clientAddress', () => {
  const trusted = trustedProxyList(['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8']);

  it('without trusted proxies, the socket peer, whatever X-Forwarded-For says', () => {
    assert.equal(clientAddress('127.0.0.1', '203.0.113.7', null), '127.0.0.1');
    assert.equal(clientAddress('::ffff:192.0.2.1', undefined, null), '192.0.2.1');
    assert.equal(clientAddress(undefined, undefined, null), 'unknown');
  });

  it('from an untrusted peer, the peer (a forged header changes nothing)', () => {
    assert.equal(clientAddress('198.51.100.9', '203.0.113.7', trusted), '198.51.100.9');
  });

  it('from a trusted proxy, the rightmost forwarded address that is not a trusted proxy', () => {
    assert.equal(clientAddress('127.0.0.1', '203.0.113.7', trusted), '203.0.113.7');
    assert.equal(clientAddress('::ffff:127.0.0.1', '203.0.113.7', trusted), '203.0.113.7', 'IPv4-mapped peer');
    // The client wrote "1.1.1.1" itself; the proxies appended the rest.
    assert.equal(clientAddress('127.0.0.1', '1.1.1.1, 203.0.113.7, 10.1.2.3', trusted), '203.0.113.7');
    assert.equal(clientAddress('127.0.0.1', ['1.1.1.1', '203.0.113.7, 10.1.2.3'], trusted), '203.0.113.7', 'repeated headers');
    assert.equal(clientAddress('::1', '2001:db8::5', trusted), '2001:db8::5');
    assert.equal(clientAddress('::1', '"[2001:db8::5]:4711"', trusted), '2001:db8::5');
    assert.equal(clientAddress('::1', '203.0.113.7:4711', trusted), '203.0.113.7');
  });

  it('every hop trusted: the leftmost; a malformed entry stops the walk at the last good hop', () => {
    assert.equal(clientAddress('127.0.0.1', '10.0.0.2, 10.0.0.1', trusted), '10.0.0.2');
    assert.equal(clientAddress('127.0.0.1', 'evil, 10.0.0.1', trusted), '10.0.0.1');
    assert.equal(clientAddress('127.0.0.1', 'unknown', trusted), '127.0.0.1');
    assert.equal(clientAddress('127.0.0.1', '', trusted), '127.0.0.1');
  });
});

describe('trustedProxies entries', () => {
  it('accepts addresses and CIDR ranges of both families, refuses the rest', () => {
    assert.deepEqual(parseProxyEntry('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    assert.deepEqual(parseProxyEntry('::1'), { address: '::1', family: 'ipv6' });
    for (const bad of ['10.0.0.0/33', 'fd00::/129', 'localhost', '10.0.0.0/', '10.0.0.0/8/8', '1.2.3', '10.0.0.0/-1']) {
      assert.equal(parseProxyEntry(bad), null, bad);
    }
    assert.equal(trustedProxyList([]), null);
    assert.throws(() => trustedProxyList(['nginx']), /not an IP address or CIDR range: "nginx"/);
  });
});

describe('isLoopback', () => {
  it('this machine by name or address, IPv4-mapped too; nothing else', () => {
    for (const yes of ['localhost', '::1', '127.0.0.1', '127.1.2.3', '::ffff:127.0.0.1']) assert.equal(isLoopback(yes), true, yes);
    for (const no of [undefined, '', '0.0.0.0', '::', '10.0.0.1', '::ffff:10.0.0.1', 'example.com', '128.0.0.1']) assert.equal(isLoopback(no), false, String(no));
  });
});
