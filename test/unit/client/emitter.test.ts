/**
 * The SDK's small pieces: the typed emitter, the close-code table, and the
 * import graph of src/client (browser-safe: no `node:` modules, nothing from
 * src/transport, src/server or src/brokers).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { closeMeaning, Emitter, shouldReconnect } from '../../../src/client/index.js';

class Thing extends Emitter<{ a: number; b: string }> {
  fire<K extends 'a' | 'b'>(event: K, payload: { a: number; b: string }[K]): void {
    this.emit(event, payload);
  }
}

describe('Emitter', () => {
  test('on, once, off, the function on() returns, listenerCount', () => {
    const t = new Thing();
    const seen: unknown[] = [];
    const off = t.on('a', (n) => seen.push(n));
    t.once('a', (n) => seen.push(`once ${n}`));
    t.on('b', (s) => seen.push(s));
    assert.equal(t.listenerCount('a'), 2);
    t.fire('a', 1);
    t.fire('a', 2);
    off();
    t.fire('a', 3);
    t.fire('b', 'x');
    assert.deepEqual(seen, [1, 'once 1', 2, 'x']);
    t.removeAllListeners();
    assert.equal(t.listenerCount('b'), 0);
  });

  test("an 'error' event without listeners is dropped, not thrown", () => {
    const e = new (class extends Emitter<{ error: Error }> {
      fail(): void {
        this.emit('error', new Error('x'));
      }
    })();
    assert.doesNotThrow(() => e.fail());
  });

  test('listeners run from a snapshot: one removed during an emit still runs in that emit, not in later ones', () => {
    const t = new Thing();
    const seen: string[] = [];
    const second = (): void => {
      seen.push('second');
    };
    t.on('a', () => {
      seen.push('first');
      t.off('a', second);
    });
    t.on('a', second);
    t.fire('a', 1); // the snapshot still calls it this time
    t.fire('a', 2);
    assert.deepEqual(seen, ['first', 'second', 'first']);
  });
});

describe('close-code table', () => {
  test('meanings for WebSocket and realtime codes; the reconnect rule', () => {
    assert.match(closeMeaning(1006), /abnormal/);
    assert.match(closeMeaning(1001), /going away/);
    assert.match(closeMeaning(4500), /unauthorized.*do not reconnect/);
    assert.match(closeMeaning(4003), /slow consumer/);
    assert.match(closeMeaning(4321), /reconnect/);
    assert.match(closeMeaning(4777), /do not reconnect/);
    assert.equal(shouldReconnect(4499), true);
    assert.equal(shouldReconnect(4500), false);
    assert.equal(shouldReconnect(1008), false);
    assert.equal(shouldReconnect(1006), true);
  });
});

describe('src/client is browser-safe', () => {
  test('no node: imports and nothing from src/transport, src/server, src/brokers, through every relative import', () => {
    const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
    const seen = new Set<string>();
    const problems: string[] = [];
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s*['"]([^'"]+)['"]/g)) {
        const spec = m[1]!;
        const rel = relative(root, file);
        if (spec.startsWith('node:')) problems.push(`${rel} imports ${spec}`);
        else if (spec.startsWith('.')) {
          const target = join(dirname(file), spec.replace(/\.js$/, '.ts'));
          const where = relative(root, target);
          if (/^src\/(transport|server|brokers)\//.test(where)) problems.push(`${rel} imports ${where}`);
          visit(target);
        } else if (spec !== '@msgpack/msgpack') problems.push(`${rel} imports the package ${spec}`);
      }
    };
    visit(join(root, 'src/client/index.ts'));
    assert.deepEqual(problems, []);
    assert.ok(seen.size >= 10, `walked ${seen.size} files`);
  });
});
