/**
 * The script a `serve --workers N` worker runs (forked by the primary,
 * workers.ts): `switchboard serve` with the primary's arguments, as a
 * worker (serve.ts reads `node:cluster`).
 */
import { main } from './main.js';

process.exit(await main(['serve', ...process.argv.slice(2)]));
