import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NegotiationError } from '../../../src/protocol/errors.js';
import { parseExtensions } from '../../../src/protocol/extensions/header.js';
import {
  acceptDeflateOffer,
  acceptDeflateResponse,
  buildDeflateOffer,
  type NegotiatedDeflate,
  type PerMessageDeflateOptions,
} from '../../../src/protocol/extensions/permessage-deflate.js';

const DEFAULTS: NegotiatedDeflate = {
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
};
const agreed = (changes: Partial<NegotiatedDeflate> = {}): NegotiatedDeflate => ({ ...DEFAULTS, ...changes });

describe('acceptDeflateOffer (server)', () => {
  const accepted: { name: string; offer: string; options?: PerMessageDeflateOptions; response: string; params: NegotiatedDeflate }[] = [
    { name: 'a bare offer', offer: 'permessage-deflate', response: 'permessage-deflate', params: agreed() },
    { name: 'client_max_window_bits without a value, no server limit: not echoed', offer: 'permessage-deflate; client_max_window_bits', response: 'permessage-deflate', params: agreed() },
    { name: "the client's own client_max_window_bits is echoed", offer: 'permessage-deflate; client_max_window_bits=10', response: 'permessage-deflate; client_max_window_bits=10', params: agreed({ clientMaxWindowBits: 10 }) },
    { name: 'a server limit on the client window when the client offered the parameter', offer: 'permessage-deflate; client_max_window_bits', options: { clientMaxWindowBits: 12 }, response: 'permessage-deflate; client_max_window_bits=12', params: agreed({ clientMaxWindowBits: 12 }) },
    { name: "the client's smaller client window wins over the server limit", offer: 'permessage-deflate; client_max_window_bits=10', options: { clientMaxWindowBits: 12 }, response: 'permessage-deflate; client_max_window_bits=10', params: agreed({ clientMaxWindowBits: 10 }) },
    { name: "the server's smaller client limit wins over the client's value", offer: 'permessage-deflate; client_max_window_bits=14', options: { clientMaxWindowBits: 9 }, response: 'permessage-deflate; client_max_window_bits=9', params: agreed({ clientMaxWindowBits: 9 }) },
    { name: 'no client_max_window_bits in the response unless offered (§7.1.2.2), even with a server limit', offer: 'permessage-deflate', options: { clientMaxWindowBits: 12 }, response: 'permessage-deflate', params: agreed({ clientMaxWindowBits: 15 }) },
    { name: 'clientMaxWindowBits: true behaves like the default', offer: 'permessage-deflate; client_max_window_bits', options: { clientMaxWindowBits: true }, response: 'permessage-deflate', params: agreed() },
    { name: 'a requested server window', offer: 'permessage-deflate; server_max_window_bits=10', response: 'permessage-deflate; server_max_window_bits=10', params: agreed({ serverMaxWindowBits: 10 }) },
    { name: 'a requested server window larger than the server limit: the limit', offer: 'permessage-deflate; server_max_window_bits=12', options: { serverMaxWindowBits: 10 }, response: 'permessage-deflate; server_max_window_bits=10', params: agreed({ serverMaxWindowBits: 10 }) },
    { name: 'a requested server window smaller than the server limit: the request', offer: 'permessage-deflate; server_max_window_bits=9', options: { serverMaxWindowBits: 12 }, response: 'permessage-deflate; server_max_window_bits=9', params: agreed({ serverMaxWindowBits: 9 }) },
    { name: 'a server limit below 15 is announced unasked', offer: 'permessage-deflate', options: { serverMaxWindowBits: 11 }, response: 'permessage-deflate; server_max_window_bits=11', params: agreed({ serverMaxWindowBits: 11 }) },
    { name: 'a server limit of 15 is not announced', offer: 'permessage-deflate', options: { serverMaxWindowBits: 15 }, response: 'permessage-deflate', params: agreed() },
    { name: 'a server window of 8 bits is accepted', offer: 'permessage-deflate; server_max_window_bits=8', response: 'permessage-deflate; server_max_window_bits=8', params: agreed({ serverMaxWindowBits: 8 }) },
    { name: 'a client window of 8 bits is accepted', offer: 'permessage-deflate; client_max_window_bits=8', response: 'permessage-deflate; client_max_window_bits=8', params: agreed({ clientMaxWindowBits: 8 }) },
    { name: 'server_no_context_takeover asked by the client is confirmed (§7.1.1.1)', offer: 'permessage-deflate; server_no_context_takeover', response: 'permessage-deflate; server_no_context_takeover', params: agreed({ serverNoContextTakeover: true }) },
    { name: 'server_no_context_takeover asked by the client is honoured even if the option is false', offer: 'permessage-deflate; server_no_context_takeover', options: { serverNoContextTakeover: false }, response: 'permessage-deflate; server_no_context_takeover', params: agreed({ serverNoContextTakeover: true }) },
    { name: 'server_no_context_takeover imposed by the server', offer: 'permessage-deflate', options: { serverNoContextTakeover: true }, response: 'permessage-deflate; server_no_context_takeover', params: agreed({ serverNoContextTakeover: true }) },
    { name: "the client's client_no_context_takeover hint is confirmed", offer: 'permessage-deflate; client_no_context_takeover', response: 'permessage-deflate; client_no_context_takeover', params: agreed({ clientNoContextTakeover: true }) },
    { name: 'client_no_context_takeover imposed by the server', offer: 'permessage-deflate; client_max_window_bits', options: { clientNoContextTakeover: true }, response: 'permessage-deflate; client_no_context_takeover', params: agreed({ clientNoContextTakeover: true }) },
    {
      name: 'everything at once, in canonical order',
      offer: 'permessage-deflate; client_max_window_bits; server_max_window_bits=12; client_no_context_takeover; server_no_context_takeover',
      options: { clientMaxWindowBits: 11, serverMaxWindowBits: 13 },
      response: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=11',
      params: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 12, clientMaxWindowBits: 11 },
    },
    { name: 'quoted values', offer: 'permessage-deflate; server_max_window_bits="10"; client_max_window_bits="9"', response: 'permessage-deflate; server_max_window_bits=10; client_max_window_bits=9', params: agreed({ serverMaxWindowBits: 10, clientMaxWindowBits: 9 }) },
    { name: 'the first of two valid offers', offer: 'permessage-deflate; server_max_window_bits=10, permessage-deflate', response: 'permessage-deflate; server_max_window_bits=10', params: agreed({ serverMaxWindowBits: 10 }) },
    { name: 'the next offer when the first is invalid', offer: 'permessage-deflate; server_max_window_bits=7, permessage-deflate; client_max_window_bits=9', response: 'permessage-deflate; client_max_window_bits=9', params: agreed({ clientMaxWindowBits: 9 }) },
    { name: 'other extensions are skipped', offer: 'x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover, x-foo', response: 'permessage-deflate; client_no_context_takeover', params: agreed({ clientNoContextTakeover: true }) },
  ];

  for (const c of accepted) {
    it(`accepts ${c.name}`, () => {
      const result = acceptDeflateOffer(parseExtensions(c.offer), c.options);
      assert.deepEqual(result, { params: c.params, responseHeader: c.response });
    });
  }

  const declined: { name: string; offer: string; options?: PerMessageDeflateOptions }[] = [
    { name: 'an unknown parameter', offer: 'permessage-deflate; foo' },
    { name: 'a parameter differing in case', offer: 'permessage-deflate; Server_No_Context_Takeover' },
    { name: 'a repeated server_no_context_takeover', offer: 'permessage-deflate; server_no_context_takeover; server_no_context_takeover' },
    { name: 'a repeated client_no_context_takeover', offer: 'permessage-deflate; client_no_context_takeover; client_no_context_takeover' },
    { name: 'a repeated server_max_window_bits', offer: 'permessage-deflate; server_max_window_bits=10; server_max_window_bits=10' },
    { name: 'a repeated client_max_window_bits', offer: 'permessage-deflate; client_max_window_bits; client_max_window_bits=10' },
    { name: 'server_no_context_takeover with a value', offer: 'permessage-deflate; server_no_context_takeover=1' },
    { name: 'client_no_context_takeover with a quoted value', offer: 'permessage-deflate; client_no_context_takeover="true"' },
    { name: 'server_max_window_bits without a value', offer: 'permessage-deflate; server_max_window_bits' },
    { name: 'server_max_window_bits=7', offer: 'permessage-deflate; server_max_window_bits=7' },
    { name: 'server_max_window_bits=16', offer: 'permessage-deflate; server_max_window_bits=16' },
    { name: 'server_max_window_bits=0', offer: 'permessage-deflate; server_max_window_bits=0' },
    { name: 'server_max_window_bits=08', offer: 'permessage-deflate; server_max_window_bits=08' },
    { name: 'server_max_window_bits=10.0', offer: 'permessage-deflate; server_max_window_bits=10.0' },
    { name: 'server_max_window_bits=+9', offer: 'permessage-deflate; server_max_window_bits=+9' },
    { name: 'server_max_window_bits=0xa', offer: 'permessage-deflate; server_max_window_bits=0xa' },
    { name: 'server_max_window_bits=abc', offer: 'permessage-deflate; server_max_window_bits=abc' },
    { name: 'client_max_window_bits=7', offer: 'permessage-deflate; client_max_window_bits=7' },
    { name: 'client_max_window_bits=16', offer: 'permessage-deflate; client_max_window_bits=16' },
    { name: 'client_max_window_bits=1e1', offer: 'permessage-deflate; client_max_window_bits=1e1' },
    { name: 'every offer invalid', offer: 'permessage-deflate; a, permessage-deflate; server_max_window_bits=20' },
    { name: 'no permessage-deflate offer', offer: 'x-foo; a=1' },
    { name: 'a differently cased name', offer: 'Permessage-Deflate' },
  ];
  for (const c of declined) {
    it(`declines ${c.name}`, () => {
      assert.equal(acceptDeflateOffer(parseExtensions(c.offer), c.options), null);
    });
  }

  it('declines an empty list', () => {
    assert.equal(acceptDeflateOffer([]), null);
  });

  it('refuses window-bits options out of 8..15', () => {
    for (const options of [{ serverMaxWindowBits: 7 }, { serverMaxWindowBits: 16 }, { serverMaxWindowBits: 10.5 }, { clientMaxWindowBits: 16 }, { clientMaxWindowBits: 0 }]) {
      assert.throws(() => acceptDeflateOffer(parseExtensions('permessage-deflate'), options), RangeError, JSON.stringify(options));
    }
  });
});

describe('buildDeflateOffer (client)', () => {
  const cases: { options?: PerMessageDeflateOptions; offer: string }[] = [
    { offer: 'permessage-deflate; client_max_window_bits' },
    { options: { clientMaxWindowBits: true }, offer: 'permessage-deflate; client_max_window_bits' },
    { options: { clientMaxWindowBits: false }, offer: 'permessage-deflate' },
    { options: { clientMaxWindowBits: 10 }, offer: 'permessage-deflate; client_max_window_bits=10' },
    { options: { serverMaxWindowBits: 8, clientMaxWindowBits: false }, offer: 'permessage-deflate; server_max_window_bits=8' },
    { options: { threshold: 0, concurrencyLimit: 1, level: 9, memLevel: 9 }, offer: 'permessage-deflate; client_max_window_bits' },
    { options: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 12, clientMaxWindowBits: 11 }, offer: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=11' },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.options ?? {})} → ${c.offer}`, () => {
      assert.equal(buildDeflateOffer(c.options), c.offer);
    });
  }

  it('refuses window-bits options out of 8..15', () => {
    for (const options of [{ serverMaxWindowBits: 16 }, { clientMaxWindowBits: 7 }, { clientMaxWindowBits: 9.5 }]) {
      assert.throws(() => buildDeflateOffer(options), RangeError, JSON.stringify(options));
    }
  });
});

describe('acceptDeflateResponse (client)', () => {
  const valid: { name: string; response: string; options?: PerMessageDeflateOptions; params: NegotiatedDeflate }[] = [
    { name: 'a bare response', response: 'permessage-deflate', params: agreed() },
    { name: 'a client window set by the server after a bare offer', response: 'permessage-deflate; client_max_window_bits=10', params: agreed({ clientMaxWindowBits: 10 }) },
    { name: "the client's own limit when the server does not set one", response: 'permessage-deflate', options: { clientMaxWindowBits: 12 }, params: agreed({ clientMaxWindowBits: 12 }) },
    { name: "a client window below the client's limit", response: 'permessage-deflate; client_max_window_bits=10', options: { clientMaxWindowBits: 12 }, params: agreed({ clientMaxWindowBits: 10 }) },
    { name: "a client window equal to the client's limit", response: 'permessage-deflate; client_max_window_bits=12', options: { clientMaxWindowBits: 12 }, params: agreed({ clientMaxWindowBits: 12 }) },
    { name: 'a server window announced unasked', response: 'permessage-deflate; server_max_window_bits=10', params: agreed({ serverMaxWindowBits: 10 }) },
    { name: 'a server window below the requested one', response: 'permessage-deflate; server_max_window_bits=9', options: { serverMaxWindowBits: 10 }, params: agreed({ serverMaxWindowBits: 9 }) },
    { name: 'a server window of 8 bits', response: 'permessage-deflate; server_max_window_bits=8', options: { serverMaxWindowBits: 8 }, params: agreed({ serverMaxWindowBits: 8 }) },
    { name: 'server_no_context_takeover unasked', response: 'permessage-deflate; server_no_context_takeover', params: agreed({ serverNoContextTakeover: true }) },
    { name: 'server_no_context_takeover confirmed', response: 'permessage-deflate; server_no_context_takeover', options: { serverNoContextTakeover: true }, params: agreed({ serverNoContextTakeover: true }) },
    { name: 'client_no_context_takeover imposed by the server', response: 'permessage-deflate; client_no_context_takeover', params: agreed({ clientNoContextTakeover: true }) },
    { name: 'client_no_context_takeover announced by the client but not echoed', response: 'permessage-deflate', options: { clientNoContextTakeover: true }, params: agreed({ clientNoContextTakeover: true }) },
    { name: 'quoted values', response: 'permessage-deflate; server_max_window_bits="11"; client_max_window_bits="9"', params: agreed({ serverMaxWindowBits: 11, clientMaxWindowBits: 9 }) },
  ];
  for (const c of valid) {
    it(`accepts ${c.name}`, () => {
      assert.deepEqual(acceptDeflateResponse(parseExtensions(c.response), c.options), c.params);
    });
  }

  const invalid: { name: string; response: string; options?: PerMessageDeflateOptions }[] = [
    { name: 'an extension that was not offered', response: 'x-foo' },
    { name: 'permessage-deflate then an extension not offered', response: 'permessage-deflate, x-foo' },
    { name: 'permessage-deflate twice', response: 'permessage-deflate, permessage-deflate' },
    { name: 'an unknown parameter', response: 'permessage-deflate; foo=1' },
    { name: 'a repeated parameter', response: 'permessage-deflate; server_no_context_takeover; server_no_context_takeover' },
    { name: 'client_max_window_bits without a value', response: 'permessage-deflate; client_max_window_bits' },
    { name: 'client_max_window_bits when not offered', response: 'permessage-deflate; client_max_window_bits=10', options: { clientMaxWindowBits: false } },
    { name: "client_max_window_bits above the client's limit", response: 'permessage-deflate; client_max_window_bits=13', options: { clientMaxWindowBits: 12 } },
    { name: 'client_max_window_bits=16', response: 'permessage-deflate; client_max_window_bits=16' },
    { name: 'client_max_window_bits=7', response: 'permessage-deflate; client_max_window_bits=7' },
    { name: 'server_max_window_bits above the request', response: 'permessage-deflate; server_max_window_bits=11', options: { serverMaxWindowBits: 10 } },
    { name: 'server_max_window_bits missing although requested', response: 'permessage-deflate', options: { serverMaxWindowBits: 10 } },
    { name: 'server_max_window_bits without a value', response: 'permessage-deflate; server_max_window_bits' },
    { name: 'server_max_window_bits=abc', response: 'permessage-deflate; server_max_window_bits=abc' },
    { name: 'server_no_context_takeover missing although requested', response: 'permessage-deflate', options: { serverNoContextTakeover: true } },
    { name: 'server_no_context_takeover with a value', response: 'permessage-deflate; server_no_context_takeover=yes' },
    { name: 'client_no_context_takeover with a value', response: 'permessage-deflate; client_no_context_takeover=1' },
  ];
  for (const c of invalid) {
    it(`rejects ${c.name}`, () => {
      assert.throws(
        () => acceptDeflateResponse(parseExtensions(c.response), c.options),
        (err: unknown) => {
          assert.ok(err instanceof NegotiationError);
          assert.equal(err.code, 'WS_ERR_INVALID_EXTENSION');
          assert.equal(err.statusCode, 400);
          return true;
        },
      );
    });
  }

  it('rejects a response without permessage-deflate', () => {
    assert.throws(() => acceptDeflateResponse([]), NegotiationError);
  });
});

describe('client and server agree', () => {
  // Every combination of a set of client and server settings: whatever the
  // server answers, the client accepts it and both sides compute the same
  // parameters, within both sides' limits.
  const bitsChoices = [undefined, 8, 10, 15];
  const clientChoices: PerMessageDeflateOptions[] = [];
  const serverChoices: PerMessageDeflateOptions[] = [];
  for (const serverNoContextTakeover of [false, true]) {
    for (const clientNoContextTakeover of [false, true]) {
      for (const serverMaxWindowBits of bitsChoices) {
        for (const clientMaxWindowBits of [...bitsChoices, true, false]) {
          const options: PerMessageDeflateOptions = { serverNoContextTakeover, clientNoContextTakeover };
          if (serverMaxWindowBits !== undefined) options.serverMaxWindowBits = serverMaxWindowBits;
          if (clientMaxWindowBits !== undefined) options.clientMaxWindowBits = clientMaxWindowBits;
          clientChoices.push(options);
          if (typeof clientMaxWindowBits !== 'boolean') serverChoices.push(options);
        }
      }
    }
  }

  it(`for ${clientChoices.length} × ${serverChoices.length} settings`, () => {
    for (const client of clientChoices) {
      const offer = parseExtensions(buildDeflateOffer(client));
      for (const server of serverChoices) {
        const label = `client ${JSON.stringify(client)} server ${JSON.stringify(server)}`;
        const accepted = acceptDeflateOffer(offer, server);
        assert.ok(accepted, label);
        const onClient = acceptDeflateResponse(parseExtensions(accepted.responseHeader), client);
        assert.deepEqual(onClient, accepted.params, label);
        assert.ok(onClient.serverMaxWindowBits <= (client.serverMaxWindowBits ?? 15), label);
        assert.ok(onClient.serverMaxWindowBits <= (server.serverMaxWindowBits ?? 15), label);
        if (typeof client.clientMaxWindowBits === 'number') assert.ok(onClient.clientMaxWindowBits <= client.clientMaxWindowBits, label);
        if (typeof server.clientMaxWindowBits === 'number' && client.clientMaxWindowBits !== false) {
          assert.ok(onClient.clientMaxWindowBits <= server.clientMaxWindowBits, label);
        }
        assert.equal(onClient.serverNoContextTakeover, client.serverNoContextTakeover || server.serverNoContextTakeover, label);
        assert.equal(onClient.clientNoContextTakeover, client.clientNoContextTakeover || server.clientNoContextTakeover, label);
      }
    }
  });
});
