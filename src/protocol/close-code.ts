/**
 * Close status codes.
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-7.4
 * @see https://www.iana.org/assignments/websocket/websocket.xml#close-code-number
 */
export const CloseCode = {
  NormalClosure: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  /** Reserved: never sent on the wire. */
  NoStatusReceived: 1005,
  /** Reserved: never sent on the wire. */
  AbnormalClosure: 1006,
  InvalidFramePayloadData: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  BadGateway: 1014,
  /** Reserved: never sent on the wire. */
  TLSHandshake: 1015,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * Whether `code` may appear in a close frame on the wire, sent or received.
 * RFC 6455 §7.4.1 defines 1000-1003 and 1007-1011; IANA added 1012-1014.
 * 1004 is reserved, 1005/1006/1015 are for local reporting only, 1016-2999
 * are reserved for future RFCs, 3000-3999 are registered, 4000-4999 private.
 */
export function isValidCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1003) ||
    (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999)
  );
}

const meanings: Record<number, string> = {
  1000: 'normal closure',
  1001: 'going away (server shutdown or page navigation)',
  1002: 'protocol error',
  1003: 'unsupported data type',
  1005: 'no status code in the close frame',
  1006: 'abnormal closure: the connection dropped without a close frame',
  1007: 'invalid payload data (e.g. text that is not UTF-8)',
  1008: 'policy violation',
  1009: 'message too big',
  1010: 'the client required an extension the server did not negotiate',
  1011: 'internal server error',
  1012: 'service restart',
  1013: 'try again later',
  1014: 'bad gateway',
  1015: 'TLS handshake failure',
};

/** A short human-readable meaning of a close code, for logs and the CLI. */
export function closeCodeMeaning(code: number): string {
  const known = meanings[code];
  if (known) return known;
  if (code >= 3000 && code <= 3999) return 'registered code (libraries, frameworks, applications)';
  if (code >= 4000 && code <= 4999) return 'application-defined code';
  return 'invalid close code';
}

/** Max bytes of a close reason: a control frame payload is <= 125 bytes, 2 of which are the code. */
export const MAX_CLOSE_REASON_BYTES = 123;
