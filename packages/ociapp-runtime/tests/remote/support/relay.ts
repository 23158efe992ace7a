import { connect, createServer, type Server, type Socket } from "node:net";
import { pathToFileURL } from "node:url";

export interface Relay {
  port: number;
  /** Destroys every connection at once (a link that drops) and refuses new ones while `refusing`. */
  cut(): void;
  refusing: boolean;
  close(): Promise<void>;
}

/**
 * A TCP relay: every connection to it is forwarded to `target`, each chunk held `delayMs` in each
 * direction (a slow link, since this kernel has no netem). `cut()` drops every connection at once.
 */
export async function startRelay(options: {
  host: string;
  port: number;
  targetHost: string;
  targetPort: number;
  delayMs: number;
}): Promise<Relay> {
  const sockets = new Set<Socket>();
  const forward = (from: Socket, to: Socket) => {
    from.on("data", (chunk: Buffer) => {
      if (options.delayMs <= 0) to.write(chunk);
      else setTimeout(() => to.destroyed || to.write(chunk), options.delayMs);
    });
    from.on("end", () => setTimeout(() => to.end(), options.delayMs));
    from.on("close", () => setTimeout(() => to.destroy(), options.delayMs));
    from.on("error", () => undefined);
  };
  const relay: Relay = {
    port: 0,
    refusing: false,
    cut() {
      for (const socket of sockets) socket.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        relay.cut();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((client) => {
    if (relay.refusing) {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = connect({ host: options.targetHost, port: options.targetPort });
    upstream.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    client.on("close", () => sockets.delete(client));
    upstream.on("close", () => sockets.delete(upstream));
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(options.port, options.host, resolve));
  relay.port = (server.address() as { port: number }).port;
  return relay;
}

// As a process (in a network namespace): relay.ts <host> <port> <targetHost> <targetPort> <delayMs>
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const [host, port, targetHost, targetPort, delay] = process.argv.slice(2);
  const relay = await startRelay({
    host: host as string,
    port: Number(port),
    targetHost: targetHost as string,
    targetPort: Number(targetPort),
    delayMs: Number(delay),
  });
  process.stdout.write(`relay listening ${relay.port}\n`);
  process.on("SIGTERM", () => void relay.close().then(() => process.exit(0)));
}
