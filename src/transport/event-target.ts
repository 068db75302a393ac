/**
 * The WHATWG-style surface of `WebSocket` (`onmessage`, `addEventListener`),
 * layered on the EventEmitter API. Event objects are only created for
 * listeners registered this way, so the `on('message')` path pays nothing.
 */
import type { EventEmitter } from 'node:events';

export class WsEvent {
  readonly type: string;
  readonly target: unknown;
  constructor(type: string, target: unknown) {
    this.type = type;
    this.target = target;
  }
}

export class MessageEvent extends WsEvent {
  readonly data: unknown;
  constructor(data: unknown, target: unknown) {
    super('message', target);
    this.data = data;
  }
}

export class CloseEvent extends WsEvent {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  constructor(code: number, reason: string, wasClean: boolean, target: unknown) {
    super('close', target);
    this.code = code;
    this.reason = reason;
    this.wasClean = wasClean;
  }
}

export class ErrorEvent extends WsEvent {
  readonly error: unknown;
  readonly message: string;
  constructor(error: unknown, target: unknown) {
    super('error', target);
    this.error = error;
    this.message = error instanceof Error ? error.message : String(error);
  }
}

export type EventListenerLike = ((event: any) => void) | { handleEvent(event: any): void };

const kListener = Symbol('kListener');
const kForOnProperty = Symbol('kForOnProperty');

type Wrapped = ((...args: any[]) => void) & { [kListener]?: EventListenerLike; [kForOnProperty]?: boolean };

function wrap(target: EventEmitter & { binaryDataForEvent?(data: unknown): unknown }, type: string, listener: EventListenerLike): Wrapped | null {
  const call = (event: WsEvent) => {
    if (typeof listener === 'function') listener.call(target, event);
    else listener.handleEvent(event);
  };
  switch (type) {
    case 'message':
      return (data: unknown, isBinary: boolean) => call(new MessageEvent(isBinary ? data : String(data), target));
    case 'close':
      return (code: number, reason: Buffer) =>
        call(new CloseEvent(code, reason.toString(), (target as any).wasClean === true, target));
    case 'error':
      return (err: unknown) => call(new ErrorEvent(err, target));
    case 'open':
      return () => call(new WsEvent('open', target));
    default:
      return null;
  }
}

/** `addEventListener` for an EventEmitter-based WebSocket. */
export function addEventListener(
  target: EventEmitter,
  type: string,
  listener: EventListenerLike,
  options: { once?: boolean } = {},
): void {
  for (const existing of target.listeners(type) as Wrapped[]) {
    if (existing[kListener] === listener && !existing[kForOnProperty]) return;
  }
  const wrapped = wrap(target, type, listener);
  if (!wrapped) return;
  wrapped[kListener] = listener;
  if (options.once) target.once(type, wrapped);
  else target.on(type, wrapped);
}

export function removeEventListener(target: EventEmitter, type: string, listener: EventListenerLike): void {
  for (const existing of target.listeners(type) as Wrapped[]) {
    if (existing[kListener] === listener && !existing[kForOnProperty]) {
      target.removeListener(type, existing);
      return;
    }
  }
}

export function getOnProperty(target: EventEmitter, type: string): EventListenerLike | null {
  for (const existing of target.listeners(type) as Wrapped[]) {
    if (existing[kForOnProperty]) return existing[kListener] ?? null;
  }
  return null;
}

export function setOnProperty(target: EventEmitter, type: string, handler: EventListenerLike | null): void {
  for (const existing of target.listeners(type) as Wrapped[]) {
    if (existing[kForOnProperty]) target.removeListener(type, existing);
  }
  if (typeof handler !== 'function') return;
  const wrapped = wrap(target, type, handler);
  if (!wrapped) return;
  wrapped[kListener] = handler;
  wrapped[kForOnProperty] = true;
  target.on(type, wrapped);
}
