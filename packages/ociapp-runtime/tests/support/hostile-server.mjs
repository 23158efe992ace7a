// A "container" that breaks the protocol on purpose, for the runtime's unit tests.
// Usage: node hostile-server.mjs <mode> <socket-path>
import { unlinkSync } from "node:fs";
import { createServer } from "node:net";

const [mode, socketPath] = process.argv.slice(2);

function frame(message) {
  const body = Buffer.from(JSON.stringify(message));
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

try {
  unlinkSync(socketPath);
} catch {}

const server = createServer((socket) => {
  const hello = frame({ type: "hello", protocol: 1, maxConcurrency: 4, maxFrameBytes: 1 << 20 });
  if (mode === "second-hello") {
    // Both in one write, so they arrive together, before the runtime considers the container ready.
    socket.write(Buffer.concat([hello, hello]));
    return;
  }
  socket.write(hello);
  socket.once("data", () => {
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
      default:
        break;
    }
  });
  socket.on("error", () => undefined);
});
server.listen(socketPath);
process.on("SIGTERM", () => process.exit(0));
