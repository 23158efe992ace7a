import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface TestPki {
  dir: string;
  caPath: string;
  ca: Buffer;
  certPath: string;
  keyPath: string;
  /** A client certificate the CA signed (for mutual TLS), and one it did not. */
  client: { cert: Buffer; key: Buffer };
  stranger: { cert: Buffer; key: Buffer };
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run("openssl", args, { cwd, timeout: 60_000 });
}

/**
 * A throwaway CA, a server certificate for `names` (IP addresses and DNS names, as SANs), a client
 * certificate signed by the CA and one signed by another CA. EC P-256 keys: quick to make.
 */
export async function makePki(dir: string, names: string[] = ["127.0.0.1", "localhost"]): Promise<TestPki> {
  const san = names.map((name) => (/^[\d.]+$|:/.test(name) ? `IP:${name}` : `DNS:${name}`)).join(",");
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl(
    [
      "req",
      "-x509",
      ...key,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=ociapp test CA",
    ],
    dir,
  );
  await openssl(
    ["req", ...key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=ociapp agent"],
    dir,
  );
  await writeFile(join(dir, "server.ext"), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "2",
      "-extfile",
      "server.ext",
    ],
    dir,
  );
  await openssl(
    ["req", ...key, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=ociapp client"],
    dir,
  );
  await writeFile(join(dir, "client.ext"), "extendedKeyUsage=clientAuth\n");
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      "client.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "client.pem",
      "-days",
      "2",
      "-extfile",
      "client.ext",
    ],
    dir,
  );
  await openssl(
    [
      "req",
      "-x509",
      ...key,
      "-keyout",
      "stranger.key",
      "-out",
      "stranger.pem",
      "-days",
      "2",
      "-subj",
      "/CN=stranger",
    ],
    dir,
  );
  return {
    dir,
    caPath: join(dir, "ca.pem"),
    ca: await readFile(join(dir, "ca.pem")),
    certPath: join(dir, "server.pem"),
    keyPath: join(dir, "server.key"),
    client: { cert: await readFile(join(dir, "client.pem")), key: await readFile(join(dir, "client.key")) },
    stranger: {
      cert: await readFile(join(dir, "stranger.pem")),
      key: await readFile(join(dir, "stranger.key")),
    },
  };
}
