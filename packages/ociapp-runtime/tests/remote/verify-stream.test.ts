import { createHash } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pack } from "tar-stream";
import { describe, expect, it } from "vitest";
import { TarBlobVerifier, UploadRejected } from "../../src/remote/agent/verify-stream.js";
import { DigestMismatchError } from "../../src/remote/errors.js";

// The agent's upload verifier over real tars (tar-stream writes them), fed in small chunks so that
// headers and bodies straddle chunk boundaries.

type Entry = { name: string; body?: Buffer; type?: "file" | "directory" | "symlink"; linkname?: string };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const archive = pack();
  for (const entry of entries) {
    if (entry.type === "directory") archive.entry({ name: entry.name, type: "directory" });
    else if (entry.type === "symlink")
      archive.entry({ name: entry.name, type: "symlink", linkname: entry.linkname ?? "/" });
    else archive.entry({ name: entry.name }, entry.body ?? Buffer.alloc(0));
  }
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function blob(content: string): Entry {
  const body = Buffer.from(content);
  return { name: `blobs/sha256/${createHash("sha256").update(body).digest("hex")}`, body };
}

async function verify(tar: Buffer, chunk = 100): Promise<{ verifier: TarBlobVerifier; passed: Buffer }> {
  const verifier = new TarBlobVerifier("sha256:test");
  const out: Buffer[] = [];
  const parts: Buffer[] = [];
  for (let at = 0; at < tar.length; at += chunk) parts.push(tar.subarray(at, at + chunk));
  await pipeline(
    Readable.from(parts),
    verifier,
    new Writable({
      write(part: Buffer, _encoding, done) {
        out.push(part);
        done();
      },
    }),
  );
  return { verifier, passed: Buffer.concat(out) };
}

describe("TarBlobVerifier", () => {
  it("passes a well-formed upload through unchanged and records each verified blob", async () => {
    const one = blob("one");
    const two = blob("x".repeat(1500));
    const tar = await tarOf([
      { name: "blobs", type: "directory" },
      one,
      two,
      { name: "index.json", body: Buffer.from("{}") },
    ]);
    const { verifier, passed } = await verify(tar, 77);
    expect(passed.equals(tar)).toBe(true);
    expect([...verifier.blobs].sort()).toEqual([one.name.slice(13), two.name.slice(13)].sort());
  });

  it("refuses a blob whose bytes are not its name's with DigestMismatchError", async () => {
    const wrong = { name: `blobs/sha256/${"0".repeat(64)}`, body: Buffer.from("not zero") };
    await expect(verify(await tarOf([wrong]))).rejects.toBeInstanceOf(DigestMismatchError);
  });

  it("refuses a header with a bad checksum as UploadRejected", async () => {
    const tar = await tarOf([blob("one")]);
    tar[0] = (tar[0] ?? 0) ^ 0x01; // the name changes, the stored checksum does not
    await expect(verify(tar)).rejects.toThrow(UploadRejected);
    await expect(verify(tar)).rejects.toThrow(/checksum/);
  });

  it("refuses a link: nothing an engine's loader could follow", async () => {
    const tar = await tarOf([{ name: "index.json", type: "symlink", linkname: "/etc/passwd" }]);
    await expect(verify(tar)).rejects.toThrow(/not a regular file or folder/);
  });

  it("refuses an upload that ends inside an entry", async () => {
    const tar = await tarOf([blob("y".repeat(2000))]);
    await expect(verify(tar.subarray(0, 1024))).rejects.toThrow(/ended inside a tar entry/);
  });

  it("refuses the same blob twice", async () => {
    const one = blob("same");
    await expect(verify(await tarOf([one, one]))).rejects.toThrow(/twice in the upload/);
  });
});
