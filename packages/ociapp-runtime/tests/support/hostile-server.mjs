// A "container" that breaks the protocol on purpose, for the runtime's unit tests.
// Usage: node hostile-server.mjs <mode> <socket-path>
// Like `ociapp serve --connect`, it connects to the runtime's socket and says hello (protocol 2);
// then, once the first request arrives, it misbehaves the way <mode> says.
import { connect } from "node:net";

const [mode, socketPath] = process.argv.slice(2);

function frame(message) {
  const body = Buffer.from(JSON.stringify(message));
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

const hello = frame({
  type: "hello",
  protocol: 2,
  role: "app",
  maxConcurrency: 4,
  limits: { maxFrameBytes: 1 << 20, maxDepth: 64, maxValues: 1_000_000 },
  capabilities: ["cancel", "ping"],
});

function misbehave(socket) {
  switch (mode) {
    case "unknown-id":
      socket.write(frame({ type: "response", id: "never-sent", payload: 1 }));
      break;
    case "huge-length":
      // Declares 4 GiB - 1 bytes and sends a few.
      socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7b, 0x7d]));
      break;
    case "garbage":
      socket.write(Buffer.from([0, 0, 0, 5, 0xff, 0xfe, 0x00, 0x01, 0x02]));
      break;
    case "hang-up":
      // Ends the connection but keeps running: no exit code to wait for.
      socket.end();
      break;
    case "stall":
      socket.write(Buffer.from([0, 0, 0, 100, 0x7b]));
      break;
    case "too-deep":
      // A valid frame nested deeper than the runtime's maxDepth: refused on its bytes.
      socket.write(
        frame({ type: "response", id: "1", payload: JSON.parse(`${"[".repeat(500)}${"]".repeat(500)}`) }),
      );
      break;
    default:
      break;
  }
}

const socket = connect(socketPath);
socket.on("error", () => undefined);
socket.on("connect", () => {
  if (mode === "second-hello") {
    // Both in one write, so they arrive together, before the runtime considers the container ready.
    socket.write(Buffer.concat([hello, hello]));
    return;
  }
  if (mode === "no-hello") {
    socket.write(frame({ type: "response", id: "1", payload: 1 }));
    return;
  }
  socket.write(hello);
  // Frames from the host: its hello, then requests. Misbehave at the first request.
  let buffered = Buffer.alloc(0);
  const onData = (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32BE(0)) {
      const length = buffered.readUInt32BE(0);
      const message = JSON.parse(buffered.subarray(4, 4 + length).toString());
      buffered = buffered.subarray(4 + length);
      if (message.type === "request" && mode === "refuse-all") {
        // Every request refused as if draining, for ever (with SIGTERM ignored, below).
        socket.write(
          frame({ type: "error", id: message.id, error: { type: "ShuttingDown", message: "draining" } }),
        );
        continue;
      }
      // A prime frame too: a host must not send one to an app that does not list "prime-request".
      if (message.type === "request" || message.type === "prime") {
        socket.removeListener("data", onData);
        misbehave(socket);
        return;
      }
    }
  };
  socket.on("data", onData);
});
process.on("SIGTERM", () => {
  if (mode !== "refuse-all") process.exit(0);
});
setInterval(() => undefined, 1 << 30);
