/**
 * The layering of src/ (docs/architecture.md), checked: `npm run check:layers`
 * (and `npm test`). A violation names its rule and the import that breaks it.
 */
/** Node's built-in modules that do I/O or touch the process: never below the transport. */
const NODE_CORE = 'core';

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'A circle between two files means neither can be understood (or tested) alone: add a seam (an interface the lower one defines).',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'protocol-no-io',
      comment: 'protocol/ is sans-I/O: bytes in, events and bytes out. Only node:buffer (isUtf8) and node:crypto (mask and accept keys) are allowed.',
      severity: 'error',
      from: { path: '^src/protocol/' },
      to: { dependencyTypes: [NODE_CORE], pathNot: '^(node:)?(buffer|crypto)$' },
    },
    {
      name: 'protocol-imports-nothing-above',
      comment: 'protocol/ is the bottom layer: it imports nothing of ours outside itself.',
      severity: 'error',
      from: { path: '^src/protocol/' },
      to: { path: '^src/', pathNot: '^src/protocol/' },
    },
    {
      name: 'wire-imports-only-protocol',
      comment: 'wire/ (the realtime wire protocol, browser-safe) builds on protocol/ close codes and nothing else of ours.',
      severity: 'error',
      from: { path: '^src/wire/' },
      to: { path: '^src/', pathNot: '^src/(wire|protocol)/' },
    },
    {
      name: 'browser-safe-no-node',
      comment: 'client/ and wire/ run in a browser: no node: modules.',
      severity: 'error',
      from: { path: '^src/(client|wire)/' },
      to: { dependencyTypes: [NODE_CORE] },
    },
    {
      name: 'client-imports-only-wire',
      comment: 'The SDK shares the wire layer with the server and nothing else of it.',
      severity: 'error',
      from: { path: '^src/client/' },
      to: { path: '^src/', pathNot: '^src/(client|wire|protocol)/' },
    },
    {
      name: 'brokers-never-call-up',
      comment: 'Brokers implement a contract (brokers/broker.ts) in terms of the wire layer; they never import the realtime layer or anything above it.',
      severity: 'error',
      from: { path: '^src/brokers/' },
      to: { path: '^src/(realtime|server|transport|carriers|fallbacks|cli)/' },
    },
    {
      name: 'realtime-sees-seams-only',
      comment: 'realtime/ sees connections as RealtimeTransport and channels as Broker: never the WebSocket layer, the carriers or the server.',
      severity: 'error',
      from: { path: '^src/realtime/' },
      to: { path: '^src/(transport|server|carriers|fallbacks|cli)/' },
    },
    {
      name: 'carriers-never-import-server',
      comment: 'The carriers reach the server through interfaces they define (FallbackHost), never by importing it.',
      severity: 'error',
      from: { path: '^src/(carriers|fallbacks)/' },
      to: { path: '^src/(server|cli)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|test|bench)/' },
    tsPreCompilationDeps: true,
    // The layering test runs these rules on a fixture tree (test/fixtures/layers) that has no tsconfig of its own.
    ...(require('node:fs').existsSync('tsconfig.json') ? { tsConfig: { fileName: 'tsconfig.json' } } : {}),
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'], extensions: ['.ts', '.js'] },
  },
};
