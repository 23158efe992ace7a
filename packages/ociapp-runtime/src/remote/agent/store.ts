import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { lstat, mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { readArtifactIndex } from "ociapp/artifact";
import { InvalidRequestError, OptionsError } from "../../errors.js";
import { DigestMismatchError, PayloadTooLargeError } from "../errors.js";
import { TarBlobVerifier, UploadRejected } from "./verify-stream.js";

export interface ReceiveOptions {
  /** Largest upload, bytes: past it the upload fails with PayloadTooLargeError. */
  maxBytes: number;
  /** ms without a byte before the upload is given up. */
  stallTimeout: number;
  /** ms the whole upload may take, from its start to its last byte (a dribble gets no more). */
  timeout: number;
  signal?: AbortSignal;
}

/**
 * The agent's artifacts, content-addressed: `<store>/artifacts/<hex>.ociapp`, each verified before it
 * got its name. A file arrives in `<store>/incoming/` (a random name, O_EXCL, mode 0600), is verified
 * while it streams and after it ended, and is renamed into place only then; a failed, refused or
 * interrupted transfer leaves nothing behind (its temp file is removed, and leftovers of a killed
 * agent are removed when the store opens). The store folder must be private (0700, this user's, not
 * a link): other local users must not swap files under the agent.
 */
export class ArtifactStore {
  private readonly held = new Map<string, string>();

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<ArtifactStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const info = await lstat(dir);
    const uid = process.getuid?.();
    if (!info.isDirectory() || (info.mode & 0o077) !== 0 || (uid !== undefined && info.uid !== uid)) {
      throw new OptionsError(
        `agent store ${dir} must be a folder of this user's with mode 0700, not a link (got mode ${(info.mode & 0o777).toString(8)})`,
      );
    }
    const store = new ArtifactStore(dir);
    await mkdir(join(dir, "artifacts"), { recursive: true, mode: 0o700 });
    await rm(join(dir, "incoming"), { recursive: true, force: true });
    await mkdir(join(dir, "incoming"), { mode: 0o700 });
    for (const name of await readdir(join(dir, "artifacts"))) {
      const match = /^([a-f0-9]{64})\.ociapp$/.exec(name);
      if (match) store.held.set(`sha256:${match[1]}`, join(dir, "artifacts", name));
    }
    return store;
  }

  /** The verified file of `digest`, or undefined. */
  pathOf(digest: string): string | undefined {
    return this.held.get(digest);
  }

  get size(): number {
    return this.held.size;
  }

  /** A fresh temp file path under `incoming/`. */
  incomingPath(): string {
    return join(this.dir, "incoming", randomBytes(12).toString("hex"));
  }

  /**
   * Streams `source` into a temp file, verifying every blob on the way (TarBlobVerifier) and bounding
   * size, stalls and the whole upload's time, then checks the manifest digest with readArtifactIndex and renames the file into
   * place. Rejects with DigestMismatchError (409), PayloadTooLargeError (413), InvalidUpload (400) or
   * the signal's reason; the temp file is gone whenever it rejects.
   */
  async receive(digest: string, source: Readable, options: ReceiveOptions): Promise<string> {
    const temp = this.incomingPath();
    const verifier = new TarBlobVerifier(digest);
    let received = 0;
    let stall: NodeJS.Timeout | undefined;
    const stalled = new AbortController();
    const arm = () => {
      clearTimeout(stall);
      stall = setTimeout(
        () => stalled.abort(new UploadRejected(`no byte arrived for ${options.stallTimeout} ms`)),
        options.stallTimeout,
      );
    };
    const signal = options.signal ? AbortSignal.any([options.signal, stalled.signal]) : stalled.signal;
    // The stall timer alone lets a client that sends a byte now and then hold a transfer slot forever.
    const overall = setTimeout(
      () => stalled.abort(new UploadRejected(`the upload did not arrive within ${options.timeout} ms`)),
      options.timeout,
    );
    try {
      arm();
      // "wx": O_CREAT | O_EXCL, so the temp name can never be a file or link someone else made.
      const sink = createWriteStream(temp, { flags: "wx", mode: 0o600 });
      await pipeline(
        source,
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            received += chunk.length;
            if (received > options.maxBytes) throw new PayloadTooLargeError(options.maxBytes);
            arm();
            yield chunk;
          }
        },
        verifier,
        sink,
        { signal },
      );
      clearTimeout(stall);
      clearTimeout(overall);
      const index = await readArtifactIndex(temp).catch((error: unknown) => {
        throw new UploadRejected(`not an artifact: ${(error as Error).message}`);
      });
      if (index.digest !== digest) {
        throw new DigestMismatchError(digest, `the upload is artifact ${index.digest}, not ${digest}`);
      }
      const final = join(this.dir, "artifacts", `${digest.slice("sha256:".length)}.ociapp`);
      await rename(temp, final);
      this.held.set(digest, final);
      return final;
    } catch (error) {
      clearTimeout(stall);
      clearTimeout(overall);
      await rm(temp, { force: true });
      const cause =
        error instanceof Error && error.name === "AbortError" && stalled.signal.aborted
          ? stalled.signal.reason
          : error;
      if (cause instanceof UploadRejected) throw new InvalidRequestError(`invalid upload: ${cause.message}`);
      throw cause;
    }
  }

  /** Records a file written and verified elsewhere (a pull) under its digest, by rename. */
  async adopt(digest: string, temp: string): Promise<string> {
    const final = join(this.dir, "artifacts", `${digest.slice("sha256:".length)}.ociapp`);
    await rename(temp, final);
    this.held.set(digest, final);
    return final;
  }
}
