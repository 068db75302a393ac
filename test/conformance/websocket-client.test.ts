/**
 * The conformance cases (cases.ts) against our WebSocket client: an echo
 * client connecting to the fuzzing peer, which plays the server.
 */
import { ClientHarness, runConformanceSuite } from './runner.js';

runConformanceSuite(new ClientHarness());
