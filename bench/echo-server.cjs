// The raw baseline: a length-prefixed JSON echo over a Unix socket, with no SDK, no validation and
// no container of its own. `node echo-server.cjs <socket path>` listens there (the host baseline);
// `node echo-server.cjs --connect <socket path>` connects to a listener there instead, as
// `ociapp serve` does in protocol v2 (the in-container baseline). The same file runs on the host and
// inside a container of the base image.
const net = require("node:net");
const fs = require("node:fs");

function serve(socket) {
  let buffered = Buffer.alloc(0);
  socket.on("data", (chunk) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const out = [];
    while (buffered.length >= 4) {
      const length = buffered.readUInt32BE(0);
      if (buffered.length < 4 + length) break;
      const message = JSON.parse(buffered.toString("utf8", 4, 4 + length));
      const body = Buffer.from(JSON.stringify({ id: message.id, payload: message.payload }));
      const header = Buffer.allocUnsafe(4);
      header.writeUInt32BE(body.length, 0);
      out.push(header, body);
      buffered = buffered.subarray(4 + length);
    }
    if (out.length > 0) socket.write(Buffer.concat(out));
  });
  socket.on("error", () => {});
}

if (process.argv[2] === "--connect") {
  const socket = net.connect(process.argv[3] || "/run/ociapp/host.sock");
  serve(socket);
  socket.on("close", () => process.exit(0));
  process.on("SIGTERM", () => process.exit(0));
} else {
  const path = process.argv[2] || "/run/ociapp/app.sock";
  try {
    fs.unlinkSync(path);
  } catch {}
  const server = net.createServer(serve);
  server.listen(path, () => {
    fs.chmodSync(path, 0o666);
    if (process.send) process.send("listening");
  });
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
