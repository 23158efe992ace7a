import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pushArtifact, RegistryClient, RegistryError } from "ociapp/registry";
import { openArtifactForLoad } from "../../artifacts/artifact-cache.js";
import { ArtifactError, EngineUnavailableError, OciappRuntimeError } from "../../errors.js";
import { createLoadStream } from "../../images/load-stream.js";
import { ARTIFACT_REPOSITORY } from "../../images/names.js";
import type { ResolvedKubernetesOptions } from "./options.js";

/** Longest image config read from the registry. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** Image configs remembered (an artifact's config never changes). */
const MAX_CONFIGS = 256;

/** What the runtime uses of an image's config. */
export interface ImageFacts {
  /** Its VOLUME paths. */
  volumes: string[];
  /** Its labels (the sweep never removes a pod whose image carries `dev.ociapp.*` labels). */
  labels: Record<string, string>;
}

/**
 * The registry the KubernetesEngine's images live in (OCI distribution spec, through `ociapp/registry`,
 * the client `ociapp-build push` and the agent's pulls use). Artifacts are pushed by manifest digest,
 * and pods name them by digest (`<nodeHost>/<repository>@sha256:<hex>`): the reference is the
 * artifact's identity, so no name an artifact carries ever matters, and the kubelet checks what it
 * pulls against the digest.
 */
export class ArtifactRegistry {
  readonly client: RegistryClient;
  /** How errors name it: "the registry at http://127.0.0.1:5124". */
  readonly where: string;
  private readonly facts = new Map<string, ImageFacts>();

  constructor(private readonly options: ResolvedKubernetesOptions["registry"]) {
    this.client = new RegistryClient({
      url: options.url,
      ...(options.username === undefined ? {} : { username: options.username }),
      ...(options.password === undefined ? {} : { password: options.password }),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    });
    this.where = `the registry at ${options.url}`;
  }

  /** The reference pods run: `<nodeHost>/<repository>@<digest>`. */
  reference(digest: string): string {
    return `${this.options.nodeHost}/${this.options.repository}@${digest}`;
  }

  /** True when the registry holds the artifact's manifest. EngineUnavailableError when it does not answer. */
  async has(digest: string, signal?: AbortSignal): Promise<boolean> {
    try {
      return await this.client.hasManifest(this.options.repository, digest, signal);
    } catch (error) {
      throw this.failure(`say whether it holds ${digest}`, error);
    }
  }

  /**
   * Checks the artifact as DockerEngine's load does (every blob against its digest, the layers'
   * unpacked size against `maxUnpackedBytes`: images/load-stream.ts, its output dropped), then pushes
   * the blobs the registry lacks and the manifest under its digest. Rejects with ArtifactError (the
   * file, its budget, its digest) or EngineUnavailableError (the registry).
   */
  async push(path: string, digest: string, maxUnpackedBytes: number, signal?: AbortSignal): Promise<void> {
    const source = await openArtifactForLoad(path, signal);
    const { stream, result } = createLoadStream(source, {
      path,
      manifestDigest: digest,
      imageName: `${ARTIFACT_REPOSITORY}:check`,
      dockerArchive: false,
      maxUnpackedBytes,
    });
    const drop = new Writable({ write: (_chunk, _encoding, callback) => callback() });
    try {
      await Promise.all([pipeline(stream, drop, ...(signal ? [{ signal }] : [])), result]);
    } catch (error) {
      source.destroy();
      const failure = await result.catch((reason: unknown) => reason);
      if (failure instanceof OciappRuntimeError) throw failure;
      throw error instanceof OciappRuntimeError
        ? error
        : new ArtifactError(path, `${path} could not be read: ${(error as Error).message}`, { cause: error });
    }
    let pushed: { digest: string };
    try {
      pushed = await pushArtifact(this.client, path, this.options.repository, signal ? { signal } : {});
    } catch (error) {
      throw this.failure(`take ${path}`, error, path);
    }
    if (pushed.digest !== digest) {
      throw new ArtifactError(
        path,
        `${path} changed while it was pushed: its digest is now ${pushed.digest}, not ${digest}`,
      );
    }
  }

  /** The image config's VOLUMEs and labels, read from the registry once per digest. */
  async imageFacts(digest: string, signal?: AbortSignal): Promise<ImageFacts> {
    const known = this.facts.get(digest);
    if (known) return known;
    const repository = this.options.repository;
    let config: {
      config?: { Volumes?: Record<string, unknown> | null; Labels?: Record<string, string> | null };
    };
    try {
      const { bytes } = await this.client.getManifest(repository, digest, signal);
      const manifest = JSON.parse(bytes.toString("utf8")) as { config?: { digest?: string } };
      const configDigest = manifest.config?.digest;
      if (typeof configDigest !== "string")
        throw new RegistryError("OCIAPP_REGISTRY", `${digest} names no config`);
      const body = await this.client.getBlob(repository, configDigest, signal);
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_CONFIG_BYTES) {
          body.destroy();
          throw new RegistryError(
            "OCIAPP_REGISTRY",
            `the config of ${digest} is larger than ${MAX_CONFIG_BYTES} bytes`,
          );
        }
        chunks.push(chunk);
      }
      config = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof config;
    } catch (error) {
      throw this.failure(`give the config of ${digest}`, error, digest);
    }
    const facts: ImageFacts = {
      volumes: Object.keys(config.config?.Volumes ?? {}),
      labels: { ...(config.config?.Labels ?? {}) },
    };
    if (this.facts.size >= MAX_CONFIGS) this.facts.clear();
    this.facts.set(digest, facts);
    return facts;
  }

  /**
   * A registry that cannot be reached, refuses the credentials (401, 403) or fails (5xx) is
   * EngineUnavailableError naming it; one that refuses or lacks what was asked about an artifact
   * (`artifact` given) is ArtifactError.
   */
  private failure(action: string, error: unknown, artifact?: string): OciappRuntimeError {
    if (error instanceof OciappRuntimeError) return error;
    const status = error instanceof RegistryError ? error.status : undefined;
    const refusal = status !== undefined && status !== 401 && status !== 403 && status < 500;
    if (error instanceof RegistryError && artifact !== undefined && (refusal || status === undefined)) {
      return new ArtifactError(artifact, `${this.where} did not ${action}: ${error.message}`, {
        cause: error,
      });
    }
    const code = (error as NodeJS.ErrnoException)?.code;
    const why =
      code && /^E[A-Z]+$/.test(code) ? ` (${code})` : `: ${(error as Error)?.message ?? String(error)}`;
    return new EngineUnavailableError(`${this.where} did not ${action}${why}`, { cause: error });
  }
}
