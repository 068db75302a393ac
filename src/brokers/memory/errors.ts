/**
 * The errors the memory broker and presence store reject with: an `Error`
 * with a `code`, as a remote broker's client would give.
 */

export function brokerError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

export function invalidChannel(channel: string): Error & { code: string } {
  return brokerError('RT_ERR_INVALID_CHANNEL', `Invalid channel: ${JSON.stringify(channel)}`);
}
