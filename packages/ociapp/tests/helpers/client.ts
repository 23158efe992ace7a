import { connect, type Socket } from "node:net";
import {
  encodeFrame,
  type HelloMessage,
  MessageReader,
  type ProtocolViolationError,
  parseServerMessage,
  type ServerMessage,
} from "../../src/protocol/index.js";

/** A minimal protocol client for tests: the runtime's real client lives in ociapp-runtime. */
export class TestClient {
  readonly socket: Socket;
  readonly hello: Promise<HelloMessage>;
  /** Resolves when the server closes the connection. */
  readonly closed: Promise<void>;
  readonly #waiting = new Map<string, (message: ServerMessage) => void>();
  readonly #received: ServerMessage[] = [];
  #resolveHello!: (hello: HelloMessage) => void;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.hello = new Promise((resolve) => {
      this.#resolveHello = resolve;
    });
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => undefined);
    new MessageReader(socket, {
      onMessage: (value) => this.#onMessage(parseServerMessage(value)),
      onViolation: (error: ProtocolViolationError) => {
        socket.destroy(error);
      },
    });
  }

  static async connect(path: string): Promise<TestClient> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const client = new TestClient(socket);
    await client.hello;
    return client;
  }

  get received(): readonly ServerMessage[] {
    return this.#received;
  }

  #onMessage(message: ServerMessage): void {
    if (message.type === "hello") {
      this.#resolveHello(message);
      return;
    }
    this.#received.push(message);
    const waiter = this.#waiting.get(message.id);
    if (waiter) {
      this.#waiting.delete(message.id);
      waiter(message);
    }
  }

  /** Sends a request and resolves with its final frame. */
  request(id: string, payload: unknown): Promise<ServerMessage> {
    const answer = this.answer(id);
    this.socket.write(encodeFrame({ type: "request", id, payload }));
    return answer;
  }

  answer(id: string): Promise<ServerMessage> {
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
