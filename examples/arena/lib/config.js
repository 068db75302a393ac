// @ts-check
/**
 * The arena's parameters, shared by the server loop, the browser and the bots.
 * Browser-safe: no Node modules. Distances are world units, times seconds.
 */

/**
 * @typedef {object} ArenaConfig
 * @property {number} width world width in units
 * @property {number} height world height in units
 * @property {number} areaSize side of one interest area (a square), in units; the state of
 *   each area goes out on its own channel. At least 2 × the view half-extent plus the margin.
 * @property {number} margin interest hysteresis, in units: a player keeps its 2×2 block of
 *   areas until it is this far past the point where another block would be chosen
 * @property {number} tickHz server ticks per second (30 or 60 in the docs; 1 to 120 accepted)
 * @property {number} keyframeEvery a keyframe per area every this many ticks (others are deltas)
 * @property {number} speed player speed, units per second
 * @property {number} radius player radius, units
 * @property {number} gemRadius gem radius, units
 * @property {number} gemsPerArea gems kept in each area
 * @property {number} quantum position resolution on the wire, in units (positions travel as integers of this)
 * @property {string} channelPrefix namespace of the block channels (`<prefix>/<ax>-<ay>`, interest.js)
 */

/** @type {Readonly<ArenaConfig>} */
export const DEFAULT_ARENA = Object.freeze({
  width: 1800,
  height: 1800,
  areaSize: 600,
  margin: 50,
  tickHz: 30,
  keyframeEvery: 30,
  speed: 220,
  radius: 14,
  gemRadius: 8,
  gemsPerArea: 4,
  quantum: 0.25,
  channelPrefix: 'arena',
});

/**
 * The configuration with defaults filled in, checked. Throws a TypeError naming the bad field.
 * @param {Partial<ArenaConfig>} [partial]
 * @returns {ArenaConfig}
 */
export function arenaConfig(partial = {}) {
  const c = { ...DEFAULT_ARENA };
  // Fields given as undefined take their default.
  for (const [k, v] of Object.entries(partial)) if (v !== undefined) /** @type {Record<string, unknown>} */ (c)[k] = v;
  /** @param {keyof ArenaConfig} key @param {number} min @param {number} max */
  const range = (key, min, max) => {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      throw new TypeError(`arena ${key} must be a number from ${min} to ${max} (got ${String(v)})`);
    }
  };
  range('width', 100, 100_000);
  range('height', 100, 100_000);
  range('areaSize', 100, 100_000);
  range('margin', 0, c.areaSize / 4);
  range('tickHz', 1, 120);
  range('keyframeEvery', 1, 10_000);
  range('speed', 1, 10_000);
  range('radius', 1, 1000);
  range('gemRadius', 1, 1000);
  range('gemsPerArea', 0, 100);
  range('quantum', 0.01, 10);
  if (typeof c.channelPrefix !== 'string' || !/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(c.channelPrefix)) {
    throw new TypeError(`arena channelPrefix must be channel segments such as "arena" (got ${String(c.channelPrefix)})`);
  }
  return c;
}

/** How far a player sees from its centre, in units, on each axis: what its 2×2 block always covers. */
export function viewHalfExtent(/** @type {ArenaConfig} */ c) {
  return c.areaSize / 2 - c.margin;
}
