/**
 * builder/nodedir.cjs, run by the two-stage image's builder with the image's own Node (see
 * Containerfile.template): prints the prefix whose include/node holds the headers of exactly that
 * Node, for npm_config_nodedir, so node-gyp never downloads them. The image's own headers first
 * (/usr/local: the official images and scripts/engine.sh's 22/24), then /usr, then the build host's,
 * bind-mounted at /ociapp/nodedir/include/node (OCIAPP_NODEDIR_PREFIXES, colon-separated, replaces
 * that list: for tests). None: one line naming the version, exit 1.
 * CommonJS and no dependencies: it runs before anything is installed, on any Node the image has.
 */
export const NODEDIR_SCRIPT = `"use strict";
const { existsSync, readFileSync } = require("node:fs");
const version = process.versions.node;
function headersVersion(prefix) {
  try {
    if (!existsSync(prefix + "/include/node/common.gypi")) return undefined;
    const header = readFileSync(prefix + "/include/node/node_version.h", "utf8");
    const part = (name) => (new RegExp("^#define NODE_" + name + "_VERSION (\\\\d+)", "m").exec(header) || [])[1];
    return [part("MAJOR"), part("MINOR"), part("PATCH")].join(".");
  } catch {
    return undefined;
  }
}
const prefixes = (process.env.OCIAPP_NODEDIR_PREFIXES || "/usr/local:/usr:/ociapp/nodedir").split(":");
for (const prefix of prefixes) {
  if (headersVersion(prefix) === version) {
    process.stdout.write(prefix);
    process.exit(0);
  }
}
process.stderr.write(
  "ociapp-build: no headers for Node " + version + " to compile native modules with: the base image has none " +
    "(/usr/local/include/node) and the build host has none for " + version + " (its Node's include/node, " +
    "/usr/include/node, node-gyp's cache ~/.cache/node-gyp/" + version + "): use a base image that ships them " +
    "(the official node images do) or put Node " + version + "'s headers in one of those places\\n",
);
process.exit(1);
`;
