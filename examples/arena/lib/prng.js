// @ts-check
/** Seeded random numbers, the same in every process and browser (the arena's world; the benchmark's payloads). */

/** mulberry32: a small seeded PRNG returning floats in [0, 1); the same seed, the same numbers. */
export function prng(/** @type {number} */ seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

