/**
 * A TCP relay on a free loopback port in front of a real server (Redis,
 * NATS), able to make one connection go silent: what the server sends on it
 * is swallowed while the connection stays open, as a half-dead NAT entry or
 * a stuck middlebox would do. The client sees no error, nothing arrives.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface RelayedConnection {
  /** Everything the client sent so far (to pick out, e.g., the one that subscribed). */
  sent(): string;
  /** From now on, drop what the server sends on this connection (the client is not told). */
  silence(): void;
  readonly silenced: boolean;
}

export class TcpRelay {
  readonly connections: RelayedConnection[] = [];
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();

  private constructor(server: net.Server) {
    this.#server = server;
  }

  /** Relay `127.0.0.1:<new port>` → `target` (host:port). */
  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpRelay> {
    const server = net.createServer();
    const relay = new TcpRelay(server);
    server.on('connection', (client) => {
      const upstream = net.connect(targetPort, targetHost);
      relay.#sockets.add(client);
      relay.#sockets.add(upstream);
      let sent = '';
      let silenced = false;
      relay.connections.push({
        sent: () => sent,
        silence: () => void (silenced = true),
        get silenced() {
          return silenced;
        },
      });
      client.on('data', (chunk: Buffer) => {
        if (sent.length < 65_536) sent += chunk.toString('latin1');
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        if (!silenced) client.write(chunk);
      });
      const end = (): void => {
        client.destroy();
        upstream.destroy();
        relay.#sockets.delete(client);
        relay.#sockets.delete(upstream);
      };
      client.on('close', end);
      upstream.on('close', end);
      client.on('error', end);
      upstream.on('error', end);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return relay;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
