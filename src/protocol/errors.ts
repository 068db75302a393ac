/**
 * Error hierarchy. Every error carries a stable, greppable `code` and, where
 * it ends a connection, the `closeCode` to send.
 *
 *   WebSocketError                       code, closeCode
 *   ├── ProtocolError                    1002
 *   ├── InvalidDataError                 1007
 *   ├── PolicyViolationError             1008
 *   ├── MessageTooBigError               1009
 *   ├── MandatoryExtensionError          1010
 *   ├── InternalError                    1011 (reported to the peer without details)
 *   ├── HandshakeError                   HTTP status instead of a close code
 *   │   ├── InvalidHeaderError
 *   │   └── NegotiationError
 *   ├── InvalidStateError                API misuse (send after close, ...)
 *   ├── InvalidArgumentError             API misuse (close code 1005, reason too long, ...)
 *   └── ConnectionClosedError            received / sent close codes
 *       ├── ConnectionClosedOK
 *       └── ConnectionClosedWithError
 */
import { CloseCode } from './close-code.js';

export class WebSocketError extends Error {
  /** Stable identifier, e.g. `WS_ERR_INVALID_OPCODE`. */
  readonly code: string;
  /** Close code to send to the peer when this error ends the connection. */
  readonly closeCode: number;
  constructor(code: string, message: string, closeCode: number = CloseCode.ProtocolError) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.closeCode = closeCode;
  }
}

export class ProtocolError extends WebSocketError {
  constructor(code: string, message: string) {
    super(code, message, CloseCode.ProtocolError);
  }
}

export class InvalidDataError extends WebSocketError {
  constructor(code: string, message: string) {
    super(code, message, CloseCode.InvalidFramePayloadData);
  }
}

export class PolicyViolationError extends WebSocketError {
  constructor(code: string, message: string) {
    super(code, message, CloseCode.PolicyViolation);
  }
}

export class MessageTooBigError extends WebSocketError {
  constructor(code: string, message: string) {
    super(code, message, CloseCode.MessageTooBig);
  }
}

export class MandatoryExtensionError extends WebSocketError {
  constructor(code: string, message: string) {
    super(code, message, CloseCode.MandatoryExtension);
  }
}

export class InternalError extends WebSocketError {
  constructor(code: string, message: string) {
    super(code, message, CloseCode.InternalError);
  }
}

/** A handshake failure: answered with an HTTP status on the server side. */
export class HandshakeError extends WebSocketError {
  readonly statusCode: number;
  /**
   * Server side: headers of the refusal (e.g. `Retry-After`). Client side,
   * `WS_ERR_UNEXPECTED_STATUS`: the response's headers, lower-case names
   * (e.g. the `location` of a 3xx not followed).
   */
  readonly headers: Record<string, string>;
  /**
   * Client side, `WS_ERR_UNEXPECTED_STATUS`: the start of the body the
   * server answered with (at most {@link MAX_REFUSAL_BODY_BYTES}, decoded as
   * UTF-8), e.g. why it refused the upgrade. Undefined otherwise.
   */
  body: string | undefined;
  constructor(code: string, message: string, statusCode = 400, headers: Record<string, string> = {}) {
    super(code, message, CloseCode.ProtocolError);
    this.statusCode = statusCode;
    this.headers = headers;
  }
}

/** How much of a refused handshake's response body a client keeps in {@link HandshakeError.body}. */
export const MAX_REFUSAL_BODY_BYTES = 1024;

export class InvalidHeaderError extends HandshakeError {}
export class NegotiationError extends HandshakeError {}

export class InvalidStateError extends WebSocketError {
  constructor(code: string, message: string) {
    super(code, message, CloseCode.InternalError);
  }
}

export class InvalidArgumentError extends WebSocketError {
  constructor(code: string, message: string) {
    super(code, message, CloseCode.InternalError);
  }
}

export class ConnectionClosedError extends WebSocketError {
  readonly received: { code: number; reason: string } | null;
  readonly sent: { code: number; reason: string } | null;
  constructor(
    message: string,
    received: { code: number; reason: string } | null,
    sent: { code: number; reason: string } | null,
  ) {
    super('WS_ERR_CONNECTION_CLOSED', message, received?.code ?? CloseCode.AbnormalClosure);
    this.received = received;
    this.sent = sent;
  }
}
export class ConnectionClosedOK extends ConnectionClosedError {}
export class ConnectionClosedWithError extends ConnectionClosedError {}
