// Knobs from the environment, shared by the benchmark scripts.

/** A positive number from `process.env[name]`, or `def` when unset or empty; throws on anything else. */
export function positiveEnvNumber(name, def) {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${v}: expected a positive number`);
  return n;
}
