/**
 * Whether `host` (a URL's hostname, `[...]` brackets allowed) is a loopback address: an IPv4
 * literal in 127.0.0.0/8 (RFC 1122 §3.2.1.3), `::1` (RFC 4291 §2.5.3), or `localhost` (RFC 6761
 * §6.3 reserves it for loopback). Plain HTTP is allowed only there: a token must never cross a
 * network in the clear. A name such as `127.example.com` is not one: the network resolves it.
 */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "");
  return bare === "localhost" || bare === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}
