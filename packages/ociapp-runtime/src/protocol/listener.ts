import { chmod, unlink } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";

/**
 * Listens on a Unix socket for exactly one connection (the container's), then stops listening and
 * removes the socket file: a container that reconnects in a loop finds nothing there. The socket is
 * made 0666 (connecting needs write permission on it; the container's user differs from the host's),
 * which is safe because its folder's parent is private to the runtime's user.
 */
export class OneShotListener {
  /** Resolves with the first connection; rejects when closed before one came. */
  readonly accepted: Promise<Socket>;
  private settle!: (socket: Socket) => void;
  private fail!: (error: Error) => void;
  private closed = false;

  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {
    this.accepted = new Promise<Socket>((resolve, reject) => {
      this.settle = resolve;
      this.fail = reject;
    });
    this.accepted.catch(() => undefined);
    server.maxConnections = 1;
    server.on("connection", (socket) => {
      if (this.closed) {
        socket.destroy();
        return;
      }
      this.settle(socket);
      this.close();
    });
    // Listening does not keep the host process alive: the start that waits for it holds a timer.
    server.unref();
  }

  /** Binds `path` (which must not exist) and makes it connectable by the container's user. */
  static async listen(path: string): Promise<OneShotListener> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.removeListener("error", reject);
        resolve();
      });
    });
    const listener = new OneShotListener(server, path);
    try {
      await chmod(path, 0o666);
    } catch (error) {
      listener.close();
      throw error;
    }
    return listener;
  }

  /** Stops listening and removes the socket file. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    unlink(this.path).catch(() => undefined);
    this.fail(new Error("the listener closed before the container connected"));
  }
}
