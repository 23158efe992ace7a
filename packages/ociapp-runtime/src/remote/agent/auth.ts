import { createHash, timingSafeEqual } from "node:crypto";
import { InvalidRequestError } from "../../errors.js";
import type { ExecuteOptions } from "../../executor.js";
import { ForbiddenError, QuotaExceededError } from "../errors.js";
import { CLIENT_SETTINGS, type ClientSetting, type TokenConfig } from "./config.js";

/** A token the agent knows, with its scopes and the live state of its quota. */
export interface Principal {
  readonly config: TokenConfig;
  readonly id: string;
  inFlight: number;
  /** Token bucket: calls available now, refilled at `quota.rate` per second up to `quota.burst`. */
  tokens: number;
  refilledAt: number;
}

/**
 * Bearer tokens (RFC 6750). The configuration holds each token's sha256, never the token; a
 * presented token is hashed and compared with every known hash by `crypto.timingSafeEqual` (fixed
 * length, no early exit), so neither the comparison nor the loop tells how much of a token matched.
 */
export class Tokens {
  private readonly entries: { hash: Buffer; principal: Principal }[];
  /** Per connection, the last `authorization` value that authenticated on it, and its principal. */
  private readonly lastOn = new WeakMap<object, { header: string; principal: Principal }>();

  constructor(tokens: readonly TokenConfig[], now = () => performance.now()) {
    this.entries = tokens.map((config) => ({
      hash: Buffer.from(config.sha256, "hex"),
      principal: { config, id: config.id, inFlight: 0, tokens: config.quota.burst, refilledAt: now() },
    }));
  }

  /** The principal for an `authorization` header value, or undefined. */
  authenticate(header: string | undefined): Principal | undefined {
    if (typeof header !== "string" || header.length > 4096) return undefined;
    // The scheme name is case-insensitive (RFC 9110 §11.1); the token is not.
    const match = /^bearer ([\x21-\x7e]+)$/i.exec(header);
    if (!match) return undefined;
    const presented = createHash("sha256")
      .update(match[1] as string)
      .digest();
    let found: Principal | undefined;
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.hash, presented)) found = entry.principal;
    }
    return found;
  }

  /**
   * authenticate(), remembering per connection (an HTTP/2 session) the last value that
   * authenticated on it: a client sends the same header on every stream, and hashing it again (a
   * new Hash object each time) was a few microseconds of every call. The remembered value is
   * compared without an early exit, and it only ever holds a header this connection itself
   * presented and that authenticated, so a guess sent on the connection learns nothing but whether
   * its length is that header's. Tokens are fixed at start: nothing remembered can go stale.
   */
  authenticateOn(connection: object | undefined, header: string | undefined): Principal | undefined {
    if (connection === undefined) return this.authenticate(header);
    const last = this.lastOn.get(connection);
    if (last !== undefined && typeof header === "string" && sameText(last.header, header)) {
      return last.principal;
    }
    const principal = this.authenticate(header);
    if (principal !== undefined) this.lastOn.set(connection, { header: header as string, principal });
    return principal;
  }
}

/** Equal strings, found without an early exit: the time taken depends on the length alone. */
function sameText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}

/** sha256 hex of a token, as the configuration stores it. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** True when the token's scopes name this digest (or "*"). */
export function digestInScope(principal: Principal, digest: string): boolean {
  const digests = principal.config.scopes.digests;
  return digests.includes("*") || digests.includes(digest);
}

/**
 * Takes one call from the token's quota (in flight and rate) at `now` (performance.now(), ms: the
 * time of admission, not of the request's arrival); throws QuotaExceededError when either is
 * used up. The caller must call `release` once the call has ended.
 */
export function admit(principal: Principal, now: number): void {
  const { inFlight } = principal.config.quota;
  if (principal.inFlight >= inFlight) {
    throw new QuotaExceededError(
      `token ${principal.id} has ${inFlight} calls in flight on this agent (its quota)`,
    );
  }
  spend(principal, now);
  principal.inFlight++;
}

/**
 * Takes one request from the token's rate (its token bucket) at `now` (performance.now(), ms);
 * throws QuotaExceededError when the bucket is empty. Execute calls take it through admit(); warm,
 * pull and upload requests take it alone (they are bounded in number at once by maxTransfers).
 */
export function spend(principal: Principal, now: number): void {
  const { rate, burst } = principal.config.quota;
  // Never refilled backwards: a caller's `now` earlier than the last refill (a call dated from its
  // arrival, admitted after a pull while others were admitted) would drain the bucket.
  if (now > principal.refilledAt) {
    principal.tokens = Math.min(burst, principal.tokens + ((now - principal.refilledAt) / 1000) * rate);
    principal.refilledAt = now;
  }
  if (principal.tokens < 1) {
    throw new QuotaExceededError(`token ${principal.id} is over its rate of ${rate} calls per second`);
  }
  principal.tokens -= 1;
}

export function release(principal: Principal): void {
  principal.inFlight--;
}

const MAX_SETTINGS_BYTES = 4096;

/**
 * The per-call settings a client sent (`ociapp-settings`, one JSON object), checked against the
 * token's scopes (which settings it may change) and the policy's caps, turned into ExecuteOptions.
 * Unknown settings, anything the token may not change and values over the policy's caps are all
 * refused with ForbiddenError (403): a client never gets more than the operator allows.
 */
export function callOptions(
  principal: Principal,
  header: string | undefined,
  caps: { maxTimeout: number },
): Omit<ExecuteOptions, "signal"> {
  if (header === undefined || header === "") return {};
  // A malformed header is a bad request (400); a well-formed one asking for what the token or the
  // policy does not allow is forbidden (403).
  if (header.length > MAX_SETTINGS_BYTES) {
    throw new InvalidRequestError(`ociapp-settings is longer than ${MAX_SETTINGS_BYTES} bytes`);
  }
  let settings: unknown;
  try {
    settings = JSON.parse(header);
  } catch {
    throw new InvalidRequestError("ociapp-settings is not a JSON object");
  }
  if (typeof settings !== "object" || settings === null || Array.isArray(settings)) {
    throw new InvalidRequestError("ociapp-settings is not a JSON object");
  }
  const options: Omit<ExecuteOptions, "signal"> = {};
  for (const [name, value] of Object.entries(settings)) {
    if (!(CLIENT_SETTINGS as readonly string[]).includes(name)) {
      throw new ForbiddenError(`setting ${JSON.stringify(name).slice(0, 80)} cannot be set by a client`);
    }
    if (!principal.config.scopes.settings.includes(name as ClientSetting)) {
      throw new ForbiddenError(`token ${principal.id} may not change setting ${name}`);
    }
    if (name === "timeout") {
      if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
        throw new InvalidRequestError("setting timeout must be an integer >= 1 (ms)");
      }
      if (value > caps.maxTimeout) {
        throw new ForbiddenError(
          `setting timeout ${value} ms is over the policy's cap of ${caps.maxTimeout} ms`,
        );
      }
      options.timeout = value;
    }
  }
  return options;
}
