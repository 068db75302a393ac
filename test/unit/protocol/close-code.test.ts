import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, closeCodeMeaning, isValidCloseCode, MAX_CLOSE_REASON_BYTES } from '../../../src/protocol/close-code.js';

describe('CloseCode', () => {
  it('has the RFC 6455 §7.4.1 and IANA values', () => {
    assert.equal(CloseCode.NormalClosure, 1000);
    assert.equal(CloseCode.GoingAway, 1001);
    assert.equal(CloseCode.ProtocolError, 1002);
    assert.equal(CloseCode.UnsupportedData, 1003);
    assert.equal(CloseCode.NoStatusReceived, 1005);
    assert.equal(CloseCode.AbnormalClosure, 1006);
    assert.equal(CloseCode.InvalidFramePayloadData, 1007);
    assert.equal(CloseCode.PolicyViolation, 1008);
    assert.equal(CloseCode.MessageTooBig, 1009);
    assert.equal(CloseCode.MandatoryExtension, 1010);
    assert.equal(CloseCode.InternalError, 1011);
    assert.equal(CloseCode.ServiceRestart, 1012);
    assert.equal(CloseCode.TryAgainLater, 1013);
    assert.equal(CloseCode.BadGateway, 1014);
    assert.equal(CloseCode.TLSHandshake, 1015);
  });

  it('fits a reason of 123 bytes in a 125-byte control payload', () => {
    assert.equal(MAX_CLOSE_REASON_BYTES, 123);
  });
});

describe('isValidCloseCode', () => {
  it('accepts the codes that may go on the wire', () => {
    for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]) {
      assert.equal(isValidCloseCode(code), true, String(code));
    }
  });

  it('rejects reserved, local-only and out-of-range codes', () => {
    for (const code of [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
      assert.equal(isValidCloseCode(code), false, String(code));
    }
  });

  it('agrees with the ranges over every 16-bit code', () => {
    for (let code = 0; code <= 0xffff; code++) {
      const expected = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
      assert.equal(isValidCloseCode(code), expected, String(code));
    }
  });
});

describe('closeCodeMeaning', () => {
  it('describes every named code', () => {
    for (const code of Object.values(CloseCode)) {
      const meaning = closeCodeMeaning(code);
      assert.ok(meaning.length > 0);
      assert.notEqual(meaning, 'invalid close code', String(code));
    }
    assert.match(closeCodeMeaning(1009), /too big/);
  });

  it('describes the registered and private ranges and flags the rest', () => {
    assert.match(closeCodeMeaning(3000), /registered/);
    assert.match(closeCodeMeaning(3999), /registered/);
    assert.match(closeCodeMeaning(4000), /application/);
    assert.match(closeCodeMeaning(4999), /application/);
    for (const code of [0, 999, 1004, 1016, 2999, 5000]) assert.equal(closeCodeMeaning(code), 'invalid close code');
  });
});
