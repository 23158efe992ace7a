import type { ReadStream } from "node:fs";
import { type RuntimeDefaults, readArtifactIndex, readRuntimeDefaults } from "ociapp/artifact";
import { PROTOCOL_VERSION } from "ociapp/protocol";
import { ArtifactError } from "../errors.js";

type ArtifactModule = typeof import("ociapp/artifact");
let artifactModule: Promise<ArtifactModule> | undefined;
// Loaded on first use, as the runtime's default readIndex is: importing the runtime stays light.
const loadArtifactModule = (): Promise<ArtifactModule> => {
  artifactModule ??= import("ociapp/artifact");
  return artifactModule;
};

/** ociapp/artifact's ArtifactFileError (a FIFO, a device, a directory, a missing path), by its code. */
function isArtifactFileError(error: unknown): error is Error {
  return error instanceof Error && (error as { code?: unknown }).code === "OCIAPP_ARTIFACT_FILE";
}

/**
 * The identity of a regular file at `path` (symbolic links followed), by stat(2) without opening it,
 * which never blocks: anything else (a FIFO, a socket, a device, a directory) rejects with
 * ociapp/artifact's ArtifactFileError. The default `stat` of {@link ArtifactCache}.
 */
export async function statRegularArtifact(path: string): Promise<FileIdentity> {
  const { statArtifact } = await loadArtifactModule();
  return statArtifact(path);
}

/**
 * The artifact's bytes for `docker load`: ociapp/artifact's openArtifactStream, which opens the path
 * only as a regular file and never blocks (a FIFO swapped in after the cache's check included), and
 * reads only through the handle it checked; the stream closes it. Rejects with ArtifactError at once
 * for anything but a readable regular file, or with the signal's reason.
 */
export async function openArtifactForLoad(path: string, signal?: AbortSignal): Promise<ReadStream> {
  const { openArtifactStream } = await loadArtifactModule();
  try {
    return await openArtifactStream(path, signal ? { signal } : {});
  } catch (error) {
    if (isArtifactFileError(error)) throw new ArtifactError(path, error.message, { cause: error });
    throw error;
  }
}

const NO_DEFAULTS: RuntimeDefaults = Object.freeze({});

/** The default reader: the artifact's index.json and manifest (ociapp/artifact, bounded, no layer read). */
export { readArtifactIndex };

/**
 * Reads an artifact's identity (the manifest digest index.json points at) and the wire protocol its
 * SDK speaks (the manifest's dev.ociapp.protocol annotation, when the build recorded one).
 */
export type ReadArtifactIndex = (
  path: string,
  options?: { signal?: AbortSignal },
) => Promise<{ digest: string; protocol?: number | undefined; annotations?: Record<string, string> }>;

export interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

export interface ArtifactCacheOptions {
  readIndex: ReadArtifactIndex;
  /** Milliseconds during which a path's last answer is trusted without a stat. Default 1 000. */
  recheckMs?: number;
  /** Paths and file identities remembered (least recently checked forgotten first). Default 1 024. */
  maxEntries?: number;
  now?: () => number;
  /** The file's identity; {@link statRegularArtifact} (regular files only) by default. */
  stat?: (path: string) => Promise<FileIdentity>;
}

interface PathEntry {
  digest: string;
  identity: string;
  checkedAt: number;
  /** In-flight re-check shared by concurrent callers. */
  pending: Promise<string> | undefined;
}

/**
 * Maps artifact paths to digests without reading tarballs on the warm path. A path's answer is
 * trusted for `recheckMs`; after that one stat (shared by concurrent callers) confirms the file's
 * identity (device, inode, size, mtime). Only a new identity reads the tarball's index again, and
 * identities already read (a hard link, the same file under another name) are answered from memory.
 * A path that is not a regular file (a FIFO, a socket, a device, a directory), or becomes one before
 * it is read, is an ArtifactError at once: neither the stat nor the read blocks on it.
 */
export class ArtifactCache {
  private readonly paths = new Map<string, PathEntry>();
  private readonly identities = new Map<string, Promise<string>>();
  /** App-declared runtime defaults by digest (bounded like the other maps). */
  private readonly defaults = new Map<string, RuntimeDefaults>();
  private readonly readIndex: ReadArtifactIndex;
  private readonly recheckMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private readonly stat: (path: string) => Promise<FileIdentity>;

  constructor(options: ArtifactCacheOptions) {
    this.readIndex = options.readIndex;
    this.recheckMs = options.recheckMs ?? 1_000;
    this.maxEntries = options.maxEntries ?? 1_024;
    this.now = options.now ?? (() => performance.now());
    this.stat = options.stat ?? statRegularArtifact;
  }

  /**
   * The digest when the path was confirmed within recheckMs; else undefined (call {@link resolve}).
   * `now` is the cache's clock read by the caller, when it has just read it.
   */
  lookup(path: string, now = this.now()): string | undefined {
    const entry = this.paths.get(path);
    if (entry !== undefined && now - entry.checkedAt < this.recheckMs) return entry.digest;
    return undefined;
  }

  /** The artifact's digest, re-checking the file when its last check is older than recheckMs. */
  resolve(path: string): Promise<string> {
    const entry = this.paths.get(path);
    if (entry !== undefined) {
      if (this.now() - entry.checkedAt < this.recheckMs) return Promise.resolve(entry.digest);
      if (entry.pending) return entry.pending;
    }
    const pending = this.check(path);
    if (entry) entry.pending = pending;
    else this.paths.set(path, { digest: "", identity: "", checkedAt: Number.NEGATIVE_INFINITY, pending });
    // A failed check leaves no entry behind: the next call tries afresh.
    pending.catch(() => {
      if (this.paths.get(path)?.pending === pending) this.paths.delete(path);
    });
    return pending;
  }

  private async check(path: string): Promise<string> {
    let file: FileIdentity;
    try {
      file = await this.stat(path);
    } catch (error) {
      // "cannot read artifact <path>: it is a FIFO, not a regular file", and the like.
      if (isArtifactFileError(error)) throw new ArtifactError(path, error.message, { cause: error });
      const code = (error as NodeJS.ErrnoException).code;
      const why = code === "ENOENT" ? "no such file" : ((error as Error).message ?? String(error));
      throw new ArtifactError(path, `cannot read artifact ${path}: ${why}`, { cause: error });
    }
    const identity = `${file.dev}:${file.ino}:${file.size}:${file.mtimeMs}`;
    const checkedAt = this.now();
    const previous = this.paths.get(path);
    let digest: string;
    if (previous && previous.identity === identity) {
      digest = previous.digest;
    } else {
      let reading = this.identities.get(identity);
      if (!reading) {
        reading = this.read(path);
        this.remember(this.identities, identity, reading);
        reading.catch(() => this.identities.delete(identity));
      }
      digest = await reading;
    }
    this.paths.delete(path);
    this.remember(this.paths, path, { digest, identity, checkedAt, pending: undefined });
    return digest;
  }

  /** The runtime defaults the artifact's manifest declares (ociapp/artifact's readRuntimeDefaults). */
  defaultsOf(digest: string): RuntimeDefaults {
    return this.defaults.get(digest) ?? NO_DEFAULTS;
  }

  private rememberDefaults(digest: string, annotations: Record<string, string> | undefined): void {
    const defaults = annotations ? readRuntimeDefaults(annotations) : NO_DEFAULTS;
    this.defaults.delete(digest);
    this.remember(this.defaults, digest, defaults);
  }

  private async read(path: string): Promise<string> {
    try {
      const index = await this.readIndex(path);
      if (typeof index?.digest !== "string" || !/^sha256:[0-9a-f]{64}$/.test(index.digest)) {
        throw new Error(`its index names no sha256 manifest digest (got ${JSON.stringify(index?.digest)})`);
      }
      // Version skew (ociapp README, "Version skew"): refuse before any container starts.
      if (index.protocol !== undefined && index.protocol !== PROTOCOL_VERSION) {
        throw new ArtifactError(
          path,
          `artifact ${path} was built with an SDK that speaks protocol ${index.protocol}; this runtime speaks protocol ${PROTOCOL_VERSION}: ${
            index.protocol < PROTOCOL_VERSION
              ? "rebuild it with ociapp-build 0.2 or later (and ociapp 0.2 or later in the app)"
              : "upgrade ociapp-runtime"
          }`,
        );
      }
      this.rememberDefaults(index.digest, index.annotations);
      return index.digest;
    } catch (error) {
      if (error instanceof ArtifactError) throw error;
      // The path became a FIFO (or vanished) after the stat above: the reader refused it at once.
      if (isArtifactFileError(error)) throw new ArtifactError(path, error.message, { cause: error });
      throw new ArtifactError(
        path,
        `invalid artifact ${path}: ${(error as Error).message ?? String(error)}`,
        {
          cause: error,
        },
      );
    }
  }

  private remember<V>(map: Map<string, V>, key: string, value: V): void {
    map.set(key, value);
    if (map.size > this.maxEntries) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
  }
}
