import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import { RegistryError } from "./errors.js";
import { discard, readBounded, send } from "./http.js";

/** Manifest media types an ociapp artifact's image can have (OCI image spec, Docker schema 2). */
export const MANIFEST_ACCEPT = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

export interface RegistryClientOptions {
  /** The registry's base URL: `https://host[:port]` (or `http://` for a registry on loopback). */
  url: string;
  username?: string;
  password?: string;
  /** PEM CA that signs the registry's certificate. Default: Node's CAs. */
  ca?: string | Buffer;
  /** ms without progress before a request fails. Default 60 000. */
  idleTimeout?: number;
}

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_TOKEN_BYTES = 64 * 1024;
const MAX_REDIRECTS = 3;

/**
 * A small client for the OCI distribution spec v1.1 (the registry HTTP API): blobs (HEAD, GET,
 * monolithic upload: POST then PUT with `digest`), manifests (GET, HEAD, PUT). Authentication as
 * registries ask for it in `WWW-Authenticate` on a 401: Basic (RFC 7617) with the configured
 * credentials, or the token flow (Docker registry token spec: GET the realm with service and scope,
 * Basic credentials when configured). Every body read is bounded; every wait has an idle timeout.
 */
export class RegistryClient {
  readonly base: URL;
  private readonly idleTimeout: number;
  private authorization: string | undefined;

  constructor(private readonly options: RegistryClientOptions) {
    this.base = new URL(options.url);
    this.idleTimeout = options.idleTimeout ?? 60_000;
  }

  /** True when the repository holds the blob. */
  async hasBlob(repository: string, digest: string, signal?: AbortSignal): Promise<boolean> {
    const response = await this.request("HEAD", `/v2/${repository}/blobs/${digest}`, {
      signal,
      scope: [repository, "pull"],
    });
    await discard(response);
    if (response.statusCode === 200) return true;
    if (response.statusCode === 404) return false;
    throw this.failure(response, `HEAD blob ${digest}`);
  }

  /** True when the repository holds the manifest (by digest or tag). */
  async hasManifest(repository: string, reference: string, signal?: AbortSignal): Promise<boolean> {
    const response = await this.request("HEAD", `/v2/${repository}/manifests/${reference}`, {
      signal,
      scope: [repository, "pull"],
      headers: { accept: MANIFEST_ACCEPT },
    });
    await discard(response);
    if (response.statusCode === 200) return true;
    if (response.statusCode === 404) return false;
    throw this.failure(response, `HEAD manifest ${reference}`);
  }

  /** The manifest's bytes and media type (at most 4 MiB). RegistryError OCIAPP_REGISTRY_NOT_FOUND on 404. */
  async getManifest(
    repository: string,
    reference: string,
    signal?: AbortSignal,
  ): Promise<{ bytes: Buffer; mediaType: string }> {
    const response = await this.request("GET", `/v2/${repository}/manifests/${reference}`, {
      signal,
      scope: [repository, "pull"],
      headers: { accept: MANIFEST_ACCEPT },
    });
    if (response.statusCode !== 200)
      throw this.failure(response, `GET manifest ${reference} from ${repository}`);
    const bytes = await readBounded(response, MAX_MANIFEST_BYTES, "the manifest");
    return { bytes, mediaType: String(response.headers["content-type"] ?? "").split(";")[0] as string };
  }

  /** A blob's body as a stream (the caller verifies it against its digest). Follows registry redirects to storage. */
  async getBlob(repository: string, digest: string, signal?: AbortSignal): Promise<IncomingMessage> {
    const response = await this.request("GET", `/v2/${repository}/blobs/${digest}`, {
      signal,
      scope: [repository, "pull"],
    });
    if (response.statusCode !== 200) throw this.failure(response, `GET blob ${digest}`);
    return response;
  }

  /** Uploads one blob monolithically (POST an upload session, then PUT the bytes with `?digest=`). */
  async pushBlob(
    repository: string,
    digest: string,
    size: number,
    body: () => Readable,
    signal?: AbortSignal,
  ): Promise<void> {
    const scope: [string, string] = [repository, "pull,push"];
    const started = await this.request("POST", `/v2/${repository}/blobs/uploads/`, {
      signal,
      scope,
      headers: { "content-length": 0 },
    });
    await discard(started);
    const location = started.headers.location;
    if (started.statusCode !== 202 || typeof location !== "string")
      throw this.failure(started, "POST blob upload");
    const target = new URL(location, this.base);
    if (target.origin !== this.base.origin) {
      throw new RegistryError(
        "OCIAPP_REGISTRY",
        `the registry sent the upload to another host (${target.host})`,
      );
    }
    target.searchParams.set("digest", digest);
    const put = await this.request("PUT", `${target.pathname}${target.search}`, {
      signal,
      scope,
      headers: { "content-type": "application/octet-stream", "content-length": size },
      body,
    });
    await discard(put);
    if (put.statusCode !== 201) throw this.failure(put, `PUT blob ${digest}`);
  }

  /** Puts a manifest under a digest or a tag. */
  async putManifest(
    repository: string,
    reference: string,
    bytes: Buffer,
    mediaType: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const response = await this.request("PUT", `/v2/${repository}/manifests/${reference}`, {
      signal,
      scope: [repository, "pull,push"],
      headers: { "content-type": mediaType, "content-length": bytes.length },
      body: bytes,
    });
    await discard(response);
    if (response.statusCode !== 201) throw this.failure(response, `PUT manifest ${reference}`);
  }

  private async request(
    method: string,
    path: string,
    options: {
      signal?: AbortSignal | undefined;
      scope: [string, string];
      headers?: Record<string, string | number>;
      body?: Buffer | (() => Readable);
    },
  ): Promise<IncomingMessage> {
    let url = new URL(path, this.base);
    for (let attempt = 0, redirects = 0; ; attempt++) {
      const sameOrigin = url.origin === this.base.origin;
      const headers = { ...options.headers };
      // Credentials go to the registry only, never to a storage host it redirects to.
      if (this.authorization && sameOrigin) headers.authorization = this.authorization;
      const response = await send({
        method,
        url,
        headers,
        ...(options.body === undefined ? {} : { body: options.body }),
        ...(this.options.ca === undefined ? {} : { ca: this.options.ca }),
        ...(options.signal ? { signal: options.signal } : {}),
        idleTimeout: this.idleTimeout,
      });
      const status = response.statusCode ?? 0;
      if (status === 401 && attempt === 0 && sameOrigin) {
        await discard(response);
        await this.authenticate(
          String(response.headers["www-authenticate"] ?? ""),
          options.scope,
          options.signal,
        );
        continue;
      }
      if (
        (status === 307 || status === 302 || status === 301 || status === 303) &&
        (method === "GET" || method === "HEAD")
      ) {
        await discard(response);
        if (++redirects > MAX_REDIRECTS)
          throw new RegistryError("OCIAPP_REGISTRY", `more than ${MAX_REDIRECTS} redirects`);
        url = new URL(String(response.headers.location ?? ""), url);
        if (url.protocol !== "https:" && url.protocol !== this.base.protocol) {
          throw new RegistryError("OCIAPP_REGISTRY", `the registry redirected to ${url.protocol}`);
        }
        continue;
      }
      return response;
    }
  }

  /** Answers a 401 challenge: Basic with the credentials, or a token from the realm (bounded). */
  private async authenticate(
    challenge: string,
    scope: [string, string],
    signal?: AbortSignal,
  ): Promise<void> {
    const { username, password } = this.options;
    const basic =
      username === undefined
        ? undefined
        : `Basic ${Buffer.from(`${username}:${password ?? ""}`).toString("base64")}`;
    const scheme = challenge.split(" ", 1)[0]?.toLowerCase();
    if (scheme === "basic") {
      if (!basic)
        throw new RegistryError(
          "OCIAPP_REGISTRY",
          `${this.base.host} wants credentials and none are configured`,
          { status: 401 },
        );
      this.authorization = basic;
      return;
    }
    if (scheme !== "bearer")
      throw new RegistryError(
        "OCIAPP_REGISTRY",
        `${this.base.host} answered 401 without a usable challenge`,
        { status: 401 },
      );
    const params = new Map<string, string>();
    for (const match of challenge.matchAll(/(\w+)="([^"]*)"/g))
      params.set((match[1] as string).toLowerCase(), match[2] as string);
    const realm = new URL(params.get("realm") ?? "");
    if (params.has("service")) realm.searchParams.set("service", params.get("service") as string);
    realm.searchParams.set("scope", `repository:${scope[0]}:${scope[1]}`);
    const response = await send({
      method: "GET",
      url: realm,
      headers: basic ? { authorization: basic } : {},
      ...(this.options.ca === undefined ? {} : { ca: this.options.ca }),
      ...(signal ? { signal } : {}),
      idleTimeout: this.idleTimeout,
    });
    if (response.statusCode !== 200) throw this.failure(response, "token request");
    const body = JSON.parse(
      (await readBounded(response, MAX_TOKEN_BYTES, "the token answer")).toString("utf8"),
    ) as {
      token?: unknown;
      access_token?: unknown;
    };
    const token = typeof body.token === "string" ? body.token : body.access_token;
    if (typeof token !== "string")
      throw new RegistryError("OCIAPP_REGISTRY", "the token answer holds no token");
    this.authorization = `Bearer ${token}`;
  }

  private failure(response: IncomingMessage, what: string): RegistryError {
    const status = response.statusCode ?? 0;
    void discard(response);
    const code = status === 404 ? "OCIAPP_REGISTRY_NOT_FOUND" : "OCIAPP_REGISTRY";
    const why = status === 401 || status === 403 ? " (check the credentials)" : "";
    return new RegistryError(code, `${this.base.host}: ${what} failed with HTTP ${status}${why}`, { status });
  }
}
