import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { extract } from "tar-stream";

export interface ExtractedLayout {
  /** every regular file in archive order */
  names: string[];
  /** blob name -> sha256 hex of its content, computed while streaming */
  blobHashes: Map<string, string>;
  /** small JSON files (index.json, oci-layout, and blobs under 1 MiB) parsed */
  json: Map<string, unknown>;
}

/** Streams a whole .ociapp through a tar reader independent of ociapp/artifact, hashing every blob. */
export async function extractLayout(path: string): Promise<ExtractedLayout> {
  const layout: ExtractedLayout = { names: [], blobHashes: new Map(), json: new Map() };
  const reader = extract();
  reader.on("entry", (header, stream, next) => {
    if (header.type !== "file") {
      stream.resume();
      stream.on("end", next);
      return;
    }
    layout.names.push(header.name);
    const hash = createHash("sha256");
    const small: Buffer[] = [];
    let size = 0;
    stream.on("data", (chunk: unknown) => {
      const bytes = chunk as Buffer;
      hash.update(bytes);
      size += bytes.length;
      if (size <= 1024 * 1024) small.push(bytes);
    });
    stream.on("end", () => {
      layout.blobHashes.set(header.name, hash.digest("hex"));
      if (size <= 1024 * 1024) {
        try {
          layout.json.set(header.name, JSON.parse(Buffer.concat(small).toString("utf8")));
        } catch {
          // a layer or other binary blob
        }
      }
      next();
    });
  });
  await pipeline(createReadStream(path), reader);
  return layout;
}
