import { describe, expect, it } from "vitest";
import { hashToken, Tokens } from "../../src/remote/agent/auth.js";
import { parseAgentConfig } from "../../src/remote/agent/config.js";

// Tokens.authenticateOn: what a connection remembers never lets a different header through, and a
// header that failed is not remembered.

const A = "token-a-0123456789abcdef";
const B = "token-b-0123456789abcdef";

function tokens(): Tokens {
  const config = parseAgentConfig({
    listen: { host: "127.0.0.1", port: 0 },
    store: "/nonexistent",
    tokens: [
      { id: "a", sha256: hashToken(A), scopes: { digests: ["*"] } },
      { id: "b", sha256: hashToken(B), scopes: { digests: ["*"] } },
    ],
  });
  return new Tokens(config.tokens);
}

describe("Tokens.authenticateOn", () => {
  it("gives each header its own principal on one connection, and refuses wrong ones", () => {
    const known = tokens();
    const connection = {};
    expect(known.authenticateOn(connection, `Bearer ${A}`)?.id).toBe("a");
    expect(known.authenticateOn(connection, `Bearer ${A}`)?.id).toBe("a");
    // Same length as the remembered header, one character off.
    expect(known.authenticateOn(connection, `Bearer ${A.slice(0, -1)}g`)).toBeUndefined();
    expect(known.authenticateOn(connection, `Bearer ${B}`)?.id).toBe("b");
    expect(known.authenticateOn(connection, `Bearer ${A}`)?.id).toBe("a");
    expect(known.authenticateOn(connection, undefined)).toBeUndefined();
    expect(known.authenticateOn(connection, "")).toBeUndefined();
  });

  it("keeps connections apart, and works without one", () => {
    const known = tokens();
    const first = {};
    expect(known.authenticateOn(first, `Bearer ${A}`)?.id).toBe("a");
    expect(known.authenticateOn({}, "Bearer nope")).toBeUndefined();
    expect(known.authenticateOn(undefined, `Bearer ${B}`)?.id).toBe("b");
    expect(known.authenticateOn(first, `Bearer ${A}`)).toBe(known.authenticate(`Bearer ${A}`));
  });
});
