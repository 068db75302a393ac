/**
 * The errors every broker and presence store rejects with: an `Error` with a
 * stable `code` (the realtime layer answers RT_ERR_BROKER_UNAVAILABLE with
 * 503), the same for memory, Redis and NATS.
 */

export type BrokerError = Error & { code: string };

export function brokerError(code: string, message: string, cause?: unknown): BrokerError {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

export function invalidChannel(channel: string): BrokerError {
  return brokerError('RT_ERR_INVALID_CHANNEL', `Invalid channel: ${JSON.stringify(channel)}`);
}

export function closedError(what: string): BrokerError {
  return brokerError('RT_ERR_BROKER_CLOSED', `The ${what} is closed`);
}

/** The documented 503-class error: the broker (`engine`: Redis, NATS) cannot be reached now; retry later. */
export function unavailable(engine: string, cause?: unknown): BrokerError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return brokerError('RT_ERR_BROKER_UNAVAILABLE', `${engine} is unavailable${detail}`, cause);
}
