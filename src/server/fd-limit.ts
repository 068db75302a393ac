/**
 * The open-files limit of this process against `limits.maxConnections`: every
 * WebSocket (and every SSE stream or long poll) holds a file descriptor, so a
 * limit below the connection limit makes the server fail accepts (EMFILE)
 * long before it refuses connections with its own 503. `serve` warns at start
 * (docs/production.md says how to raise it).
 */
import { readFileSync } from 'node:fs';

/** Descriptors the server needs besides its connections: the listening socket, broker and log files, stdio, a margin. */
export const FD_HEADROOM = 100;

/**
 * The soft limit on open files ("Max open files" in /proc/self/limits), or
 * null where it cannot be read (not Linux) or is unlimited.
 * @param limitsText the text of /proc/self/limits (read from the file when omitted)
 */
export function openFilesLimit(limitsText?: string): number | null {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return null;
    }
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  if (!m || m[1] === 'unlimited') return null;
  const n = Number(m[1]);
  return Number.isInteger(n) && n > 0 ? n : null;
}

/** What to log when `limit` is below `maxConnections` + {@link FD_HEADROOM}; null when it is enough (or unknown). */
export function fdLimitWarning(limit: number | null, maxConnections: number): { msg: string; openFilesLimit: number; needed: number } | null {
  const needed = maxConnections + FD_HEADROOM;
  if (limit === null || limit >= needed) return null;
  return {
    msg: `the open-files limit (ulimit -n) is ${limit}, below limits.maxConnections (${maxConnections}) + ${FD_HEADROOM} for the server's own files: past about ${Math.max(0, limit - FD_HEADROOM)} connections accepts fail (EMFILE) instead of a 503; raise it (LimitNOFILE=, ulimit -n ${needed}; see docs/production.md) or lower limits.maxConnections`,
    openFilesLimit: limit,
    needed,
  };
}
