/**
 * The conformance cases (cases.ts) against our WebSocketServer: an echo
 * server on port 0, the fuzzing peer as its client.
 */
import { runConformanceSuite, ServerHarness } from './runner.js';

runConformanceSuite(new ServerHarness());
