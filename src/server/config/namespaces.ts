/**
 * Which namespace's rules apply to a channel or a subscription pattern,
 * looked up in a trie of the configured prefixes.
 */
import { DEFAULT_NAMESPACE, type NamespaceConfig, type RealtimeConfig } from './defaults.js';

interface NamespaceNode {
  children: Map<string, NamespaceNode>;
  ns: NamespaceConfig | undefined;
}

const indexes = new WeakMap<readonly NamespaceConfig[], NamespaceNode>();

/** A trie of the namespaces by prefix segment; built once per namespaces array (treat it as immutable). */
function namespaceIndex(namespaces: readonly NamespaceConfig[]): NamespaceNode {
  let root = indexes.get(namespaces);
  if (root) return root;
  root = { children: new Map(), ns: undefined };
  for (const ns of namespaces) {
    let node = root;
    const prefix = ns.prefix.endsWith('/') ? ns.prefix.slice(0, -1) : ns.prefix;
    if (prefix !== '') {
      for (const segment of prefix.split('/')) {
        let child = node.children.get(segment);
        if (!child) node.children.set(segment, (child = { children: new Map(), ns: undefined }));
        node = child;
      }
    }
    node.ns ??= ns;
  }
  root.ns ??= DEFAULT_NAMESPACE as NamespaceConfig;
  indexes.set(namespaces, root);
  return root;
}

/**
 * Every namespace that a channel matched by `pattern` can belong to (for a
 * plain channel, exactly its namespace). Exact: `chat/+` with namespaces
 * `chat` and `chat/vip` reaches both; `chat/public/#` with `chat` and
 * `chat/public` reaches only `chat/public`.
 */
export function namespacesReachedBy(config: Pick<RealtimeConfig, 'namespaces'>, pattern: string): NamespaceConfig[] {
  const root = namespaceIndex(config.namespaces);
  const out = new Set<NamespaceConfig>();
  const segments = pattern.split('/');
  const addSubtree = (node: NamespaceNode) => {
    for (const child of node.children.values()) {
      if (child.ns) out.add(child.ns);
      addSubtree(child);
    }
  };
  // Walk the trie along the pattern; `best` is the deepest namespace on the path so far.
  const walk = (node: NamespaceNode, i: number, best: NamespaceConfig): void => {
    if (i === segments.length) {
      out.add(best);
      return;
    }
    const segment = segments[i]!;
    if (segment === '#') {
      out.add(best); // no more segments, or ones that leave the trie
      addSubtree(node); // or exactly the path of any namespace below
      return;
    }
    if (segment === '+') {
      out.add(best); // a segment no namespace names
      for (const child of node.children.values()) walk(child, i + 1, child.ns ?? best);
      return;
    }
    const child = node.children.get(segment);
    if (!child) out.add(best);
    else walk(child, i + 1, child.ns ?? best);
  };
  walk(root, 0, root.ns!);
  return [...out];
}

const PRESENCE_ORDER = ['off', 'counts', 'full'] as const;

/**
 * The namespace of a channel: the one whose prefix is the longest
 * whole-segment prefix of the name (`''` when none is).
 *
 * For a pattern (a subscription with `+`/`#`), the rules every channel it
 * can match satisfies: if it reaches one namespace, that one; else a
 * combination of all it reaches ({@link namespacesReachedBy}) in which each
 * permission holds only if it holds in all of them (`clientPublish`,
 * `anonymous*` AND-ed, the least presence, the longest batch), with the
 * longest common prefix. Without this, an anonymous `#` in a namespace that
 * allows anonymous readers would also receive channels of one that does not.
 */
export function resolveNamespace(config: Pick<RealtimeConfig, 'namespaces'>, channel: string): NamespaceConfig {
  const root = namespaceIndex(config.namespaces);
  if (!channel.includes('+') && !channel.includes('#')) {
    let node = root;
    let best = root.ns!;
    for (const segment of channel.split('/')) {
      const child = node.children.get(segment);
      if (!child) break;
      node = child;
      if (child.ns) best = child.ns;
    }
    return best;
  }
  const reached = namespacesReachedBy(config, channel);
  if (reached.length === 1) return reached[0]!;
  return combineNamespaces(reached);
}

function combineNamespaces(list: NamespaceConfig[]): NamespaceConfig {
  let prefix = list[0]!.prefix.split('/');
  for (const ns of list) {
    const segments = ns.prefix.split('/');
    let n = 0;
    while (n < prefix.length && n < segments.length && prefix[n] === segments[n]) n++;
    prefix = prefix.slice(0, n);
  }
  const smallest = list.reduce((a, b) => (b.history.size < a.history.size ? b : a));
  return {
    prefix: prefix.join('/'),
    history: { ...smallest.history },
    presence: PRESENCE_ORDER[Math.min(...list.map((ns) => PRESENCE_ORDER.indexOf(ns.presence)))]!,
    presenceBatchMs: Math.max(...list.map((ns) => ns.presenceBatchMs)),
    clientPublish: list.every((ns) => ns.clientPublish),
    anonymousSubscribe: list.every((ns) => ns.anonymousSubscribe),
    anonymousPublish: list.every((ns) => ns.anonymousPublish),
  };
}
