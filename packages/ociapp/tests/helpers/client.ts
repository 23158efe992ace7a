import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type AppHelloMessage,
  type AppMessage,
  DEFAULT_MAX_DEPTH,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_VALUES,
  encodeFrame,
  type HostHelloMessage,
  type LogMessage,
  MessageReader,
  type ProtocolViolationError,
  parseAppMessage,
} from "../../src/protocol/index.js";

/** A host's hello with the default limits; fields given override it. */
export function hostHello(overrides: Partial<HostHelloMessage> = {}): HostHelloMessage {
  return {
    type: "hello",
    protocol: 2,
    role: "host",
    limits: {
      maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
      maxDepth: DEFAULT_MAX_DEPTH,
      maxValues: DEFAULT_MAX_VALUES,
    },
    capabilities: ["cancel", "ping"],
    logRecords: false,
    ...overrides,
  };
}

export interface TestClientOptions {
  /** The hello sent first (default hostHello()), or false to send none (tests of the handshake). */
  hello?: HostHelloMessage | false;
}

type Final = Exclude<AppMessage, AppHelloMessage | LogMessage>;

/**
 * A minimal host for tests (the runtime's real one lives in ociapp-runtime): sends its hello at once,
 * reads the app's frames within the limits its hello announced (a frame past them is recorded in
 * violation and the connection closed), and matches final frames to ids.
 */
export class TestClient {
  readonly socket: Socket;
  readonly hello: Promise<AppHelloMessage>;
  /** Resolves when the connection closes. */
  readonly closed: Promise<void>;
  /** Final frames (response, error, pong) in arrival order. */
  readonly received: Final[] = [];
  readonly logs: LogMessage[] = [];
  /** Set when the app broke the protocol or this host's limits. */
  violation: ProtocolViolationError | undefined;
  readonly #waiting = new Map<string, (message: Final) => void>();
  #resolveHello!: (hello: AppHelloMessage) => void;

  constructor(socket: Socket, options: TestClientOptions = {}) {
    this.socket = socket;
    this.hello = new Promise((resolve) => {
      this.#resolveHello = resolve;
    });
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => undefined);
    const hello = options.hello ?? hostHello();
    const limits = hello === false ? hostHello().limits : hello.limits;
    new MessageReader(socket, {
      ...limits,
      onMessage: (value) => this.#onMessage(parseAppMessage(value)),
      onViolation: (error: ProtocolViolationError) => {
        this.violation = error;
        socket.destroy(error);
      },
    });
    if (hello !== false) socket.write(encodeFrame(hello));
  }

  /** Connects to a server in listen mode and waits for its hello. */
  static async connect(path: string, options: TestClientOptions = {}): Promise<TestClient> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const client = new TestClient(socket, options);
    await client.hello;
    return client;
  }

  #onMessage(message: AppMessage): void {
    if (message.type === "hello") {
      this.#resolveHello(message);
      return;
    }
    if (message.type === "log") {
      this.logs.push(message);
      return;
    }
    this.received.push(message);
    const waiter = this.#waiting.get(message.id);
    if (waiter) {
      this.#waiting.delete(message.id);
      waiter(message);
    }
  }

  /** Sends a request and resolves with its final frame. */
  request(id: string, payload: unknown, extra: Record<string, unknown> = {}): Promise<Final> {
    const answer = this.answer(id);
    this.socket.write(encodeFrame({ type: "request", id, payload, ...extra }));
    return answer;
  }

  /** Sends a ping and resolves with its pong (or error frame). */
  ping(id: string, prime?: boolean): Promise<Final> {
    const answer = this.answer(id);
    this.socket.write(encodeFrame(prime === undefined ? { type: "ping", id } : { type: "ping", id, prime }));
    return answer;
  }

  answer(id: string): Promise<Final> {
    return new Promise((resolve) => this.#waiting.set(id, resolve));
  }

  cancel(id: string): void {
    this.socket.write(encodeFrame({ type: "cancel", id }));
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * The host side of connect mode, as a runtime sets it up: a private folder with host.sock in it,
 * accepting one connection (then the listener closes and the socket file goes). The caller removes
 * dir with close().
 */
export class TestHost {
  readonly dir: string;
  readonly socketPath: string;
  readonly #server: Server;
  readonly #accepted: Promise<Socket>;

  private constructor(dir: string, server: Server) {
    this.dir = dir;
    this.socketPath = join(dir, "host.sock");
    this.#server = server;
    this.#accepted = new Promise((resolve) => {
      server.once("connection", (socket: Socket) => {
        server.close();
        resolve(socket);
      });
    });
  }

  /** A folder for host.sock, not listening yet: listen() starts. */
  static create(): TestHost {
    const dir = mkdtempSync(join(tmpdir(), "ociapp-host-"));
    return new TestHost(dir, createServer());
  }

  /** Binds host.sock, connectable by any uid (the container's user is not the host's). */
  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.socketPath, resolve);
    });
    chmodSync(this.socketPath, 0o666);
  }

  /** The app's connection, as a TestClient that has sent its hello (and read the app's). */
  async accept(options: TestClientOptions = {}): Promise<TestClient> {
    const client = new TestClient(await this.#accepted, options);
    await client.hello;
    return client;
  }

  close(): void {
    this.#server.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
