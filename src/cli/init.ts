/**
 * `switchboard init`: a commented YAML configuration with a fresh HMAC
 * secret and API key, ready for `switchboard serve --config`.
 */
import { randomBytes } from 'node:crypto';

/** A new configuration file's text: 32 random bytes of secret (43 base64url characters), 24 of API key (32 characters). */
export function configTemplate(secrets: { hmacSecret: string; apiKey: string } = freshSecrets()): string {
  return `# Switchboard configuration, written by \`switchboard init\` on ${new Date().toISOString().slice(0, 10)}.
# Run:   switchboard serve --config <this file>
# Every key with its default: docs/configuration.md#reference.
# Environment variables (SWITCHBOARD_PORT, SWITCHBOARD_JWT_SECRET, ...) override this file,
# and command-line flags (--port, --host) override both.
#
# This file holds secrets: keep it out of version control and readable only by the server.

# Interface and port. 127.0.0.1 serves this machine only; 0.0.0.0 (or "::") every interface.
host: 127.0.0.1
port: 8080
# The WebSocket endpoint; the SSE and long-polling fallbacks live under <path>/session.
path: /rt

# Pages on other origins that may connect (the server's own origin always may).
# allowedOrigins: ["https://app.example.com"]

auth:
  # Shared secret for HS256 tokens: your backend signs with it (README, "Your backend issues tokens"),
  # and \`switchboard token --user alice --config <this file>\` makes one for testing.
  # At least 32 bytes. With a key set there is no development mode (no POST /dev/token).
  hmacSecret: "${secrets.hmacSecret}"
  # Or verify tokens your backend signs with a private key (RS256, ES256, ES384, EdDSA):
  # publicKey: ./jwt-public.pem
  # jwksFile: ./jwks.json
  # Required iss / aud claims, when set:
  # issuer: https://auth.example.com
  # audience: switchboard
  # Let clients connect without a token (the namespaces' anonymous* rules apply):
  # anonymous: false

# Key for the HTTP API (/api/publish, /api/presence, ...), sent as "Authorization: Bearer <key>".
apiKey: "${secrets.apiKey}"

# The admin UI at /admin (README, "Admin UI"): log in with the API key above, or a password of its own.
# On a host other than loopback it needs tls (or allowInsecure: true behind a proxy that terminates TLS).
# admin:
#   enabled: true
#   password: "at least 12 characters"

# Channel namespaces by prefix; channels of no namespace get the defaults (no history, no presence).
namespaces:
  - prefix: chat
    history: { size: 50, ttlMs: 3600000 }   # the last 50 messages, at most an hour old
    presence: full                           # who is there, with join/leave pushes
    presenceBatchMs: 50
  - prefix: sys
    clientPublish: false                     # only the server publishes here (the dashboard feed)
    history: { size: 120, ttlMs: 130000 }

# History across restarts with the in-memory broker:
# broker:
#   type: memory
#   snapshotFile: ./history.sb

# log:
#   level: info
`;
}

function freshSecrets(): { hmacSecret: string; apiKey: string } {
  return { hmacSecret: randomBytes(32).toString('base64url'), apiKey: randomBytes(24).toString('base64url') };
}
