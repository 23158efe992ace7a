import { connect, type Socket } from "node:net";

/** A pipelining client for bench/echo-server.cjs: frames matched to callers by id. */
export class RawEchoClient {
  readonly #socket: Socket;
  readonly #pending = new Map<number, (payload: unknown) => void>();
  #nextId = 0;
  #buffered: Buffer = Buffer.alloc(0);
  #outgoing: Buffer[] = [];

  /** A client over a connected socket (the in-container echo connects to the host's listener). */
  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
  }

  static connect(path: string): Promise<RawEchoClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new RawEchoClient(socket));
      });
    });
  }

  call(payload: unknown): Promise<unknown> {
    const id = this.#nextId++;
    const body = Buffer.from(JSON.stringify({ type: "request", id: String(id), payload }));
    const frame = Buffer.allocUnsafe(4 + body.length);
    frame.writeUInt32BE(body.length, 0);
    body.copy(frame, 4);
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      // Frames written in one tick go out in one syscall, as the runtime's client does, so the
      // baseline is not handicapped by a write per call.
      if (this.#outgoing.push(frame) === 1) queueMicrotask(() => this.#flush());
    });
  }

  #flush(): void {
    const frames = this.#outgoing;
    this.#outgoing = [];
    this.#socket.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames));
  }

  close(): void {
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    while (this.#buffered.length >= 4) {
      const length = this.#buffered.readUInt32BE(0);
      if (this.#buffered.length < 4 + length) break;
      const message = JSON.parse(this.#buffered.toString("utf8", 4, 4 + length)) as {
        id: string;
        payload: unknown;
      };
      this.#buffered = this.#buffered.subarray(4 + length);
      const id = Number(message.id);
      const resolve = this.#pending.get(id);
      this.#pending.delete(id);
      resolve?.(message.payload);
    }
  }
}
