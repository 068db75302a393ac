/**
 * Whether the device is online: the link pauses its backoff while offline
 * and retries at once when the network comes back.
 */

/**
 * Whether the device is online, and news when that changes. The default
 * uses `navigator.onLine` and the `online`/`offline` events of `globalThis`
 * (browsers); where those do not exist (Node), the client assumes it is
 * online.
 */
export interface NetworkMonitor {
  isOnline(): boolean;
  /** Call `onOnline`/`onOffline` on changes; returns a function that stops. */
  subscribe(onOnline: () => void, onOffline: () => void): () => void;
}

/** The browser's online/offline source, or null where there is none. */
export function browserNetworkMonitor(): NetworkMonitor | null {
  const g = globalThis as {
    navigator?: { onLine?: boolean };
    addEventListener?: (type: string, fn: () => void) => void;
    removeEventListener?: (type: string, fn: () => void) => void;
  };
  if (typeof g.addEventListener !== 'function' || typeof g.removeEventListener !== 'function') return null;
  return {
    isOnline: () => g.navigator?.onLine !== false,
    subscribe(onOnline, onOffline) {
      g.addEventListener!('online', onOnline);
      g.addEventListener!('offline', onOffline);
      return () => {
        g.removeEventListener!('online', onOnline);
        g.removeEventListener!('offline', onOffline);
      };
    },
  };
}
