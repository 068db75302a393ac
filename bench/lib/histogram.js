// The latency histogram lives in src/cli/bench/histogram.ts (`switchboard
// bench` uses it too); the benchmarks load the built one, so they need
// `npm run build` first (`npm run bench` does it).
export { LatencyHistogram } from '../../dist/cli/bench/histogram.js';
