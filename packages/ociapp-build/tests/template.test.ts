import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, it } from "vitest";
import { loadTemplate, renderContainerfile } from "../src/template.js";
import { REPO_ROOT } from "./helpers/paths.js";

it("loads the repository's one Containerfile.template", async () => {
  expect(await loadTemplate()).toBe(await readFile(join(REPO_ROOT, "Containerfile.template"), "utf8"));
});

it("renders the managed image: base, user, serve entrypoint, and no apt step without system packages", async () => {
  const rendered = renderContainerfile(await loadTemplate(), {
    baseImage: "node:20-bookworm-slim",
    config: { mode: "managed", entrypoint: "dist/main.js#app", systemPackages: [] },
  });
  const instructions = rendered.split("\n").filter((line) => line && !line.startsWith("#"));
  expect(instructions[0]).toBe("FROM node:20-bookworm-slim");
  expect(instructions.join("\n")).not.toContain("apt-get");
  expect(instructions.join("\n")).not.toContain("{{");
  expect(instructions).toContain("USER 10001:10001");
  expect(instructions.at(-1)).toBe(
    'ENTRYPOINT ["node", "/app/node_modules/ociapp/bin/ociapp.js", "serve", "--app", "dist/main.js#app"]',
  );
});

it("renders an apt-get step for system packages", async () => {
  const rendered = renderContainerfile(await loadTemplate(), {
    baseImage: "node:20-bookworm-slim",
    config: { mode: "managed", entrypoint: "main.mjs", systemPackages: ["jq", "curl=7.88.1-10+deb12u8"] },
  });
  expect(rendered).toContain("apt-get install -y --no-install-recommends jq curl=7.88.1-10+deb12u8");
  expect(rendered.indexOf("apt-get")).toBeLessThan(rendered.indexOf("USER 10001:10001"));
});

const instructionsOf = (rendered: string) =>
  rendered
    .replace(/\s*\\\n\s*/g, " ")
    .split("\n")
    .filter((line) => line && !line.startsWith("#"));

it("without native modules or a check: the same instructions as before either existed (same layers, same cache)", async () => {
  const rendered = renderContainerfile(await loadTemplate(), {
    baseImage: "node:20-bookworm-slim",
    config: { mode: "managed", entrypoint: "dist/main.js#app", systemPackages: [] },
  });
  expect(instructionsOf(rendered)).toEqual([
    "FROM node:20-bookworm-slim",
    "WORKDIR /app",
    "COPY deps/ ./",
    "RUN --mount=type=cache,target=/root/.npm,sharing=locked npm install --omit=dev --no-audit --no-fund --no-update-notifier --loglevel=warn",
    "COPY app/ ./",
    "ENV NODE_ENV=production",
    "USER 10001:10001",
    'ENTRYPOINT ["node", "/app/node_modules/ociapp/bin/ociapp.js", "serve", "--app", "dist/main.js#app"]',
  ]);
});

it("with native modules: a builder stage with the toolchain and Node's headers, a final stage without", async () => {
  const rendered = renderContainerfile(await loadTemplate(), {
    baseImage: "node:22-bookworm-slim",
    config: { mode: "managed", entrypoint: "dist/main.js#app", systemPackages: ["libpq5"] },
    native: true,
    check: true,
  });
  const instructions = instructionsOf(rendered);
  const final = instructions.lastIndexOf("FROM node:22-bookworm-slim");
  const builder = instructions.slice(0, final);
  const image = instructions.slice(final);
  expect(builder[0]).toBe("FROM node:22-bookworm-slim AS builder");
  expect(builder.join("\n")).toContain("apt-get install -y --no-install-recommends libpq5");
  expect(builder.join("\n")).toContain("apt-get install -y --no-install-recommends python3 make g++");
  expect(builder.join("\n")).toMatch(
    /--mount=type=bind,from=ociapp-node-headers,target=\/ociapp\/nodedir\/include\/node/,
  );
  expect(builder.join("\n")).toMatch(/npm_config_nodedir="\$nodedir" npm_config_build_from_source=true/);
  // The final stage: system packages again (the same step, built once), the builder's /app, no toolchain.
  expect(image).toContain("COPY --from=builder /app/ ./");
  expect(image.join("\n")).toContain("libpq5");
  expect(image.join("\n")).not.toMatch(/g\+\+|npm install/);
  expect(image.at(-2)).toBe(
    'RUN --network=none --mount=type=tmpfs,target=/tmp ["node", "/app/node_modules/ociapp/bin/ociapp.js", "check", "--app", "dist/main.js#app"]',
  );
  expect(image.indexOf("USER 10001:10001")).toBeLessThan(image.length - 2);
});

it("refuses unknown and unbalanced sections", () => {
  const values = {
    baseImage: "node:20-bookworm-slim",
    config: { mode: "managed" as const, entrypoint: "main.mjs", systemPackages: [] },
  };
  expect(() => renderContainerfile("{{#FANCY}}\nRUN x\n{{/FANCY}}", values)).toThrow(/unknown section/);
  expect(() => renderContainerfile("{{#NATIVE}}\nRUN x\n", values)).toThrow(/never closed/);
  expect(() => renderContainerfile("RUN x\n{{/CHECK}}", values)).toThrow(/closes no open section/);
  expect(renderContainerfile("A\n{{#NATIVE}}\nB\n{{/NATIVE}}\n{{^NATIVE}}\nC\n{{/NATIVE}}", values)).toBe(
    "A\nC",
  );
});

it("with a bundle: the bundle is copied after the app's files and both the check and the entrypoint run it", async () => {
  const rendered = renderContainerfile(await loadTemplate(), {
    baseImage: "node:20-bookworm-slim",
    config: { mode: "managed", entrypoint: "dist/main.js#app", systemPackages: [] },
    check: true,
    bundle: true,
  });
  const instructions = instructionsOf(rendered);
  expect(instructions.indexOf("COPY bundle/serve.mjs /app/.ociapp/serve.mjs")).toBe(
    instructions.indexOf("COPY app/ ./") + 1,
  );
  expect(instructions.find((line) => line.startsWith("RUN --network=none"))).toMatch(
    /\["node", "\/app\/\.ociapp\/serve\.mjs", "check", "--app", "dist\/main\.js#app"\]$/,
  );
  expect(instructions.at(-1)).toBe(
    'ENTRYPOINT ["node", "/app/.ociapp/serve.mjs", "serve", "--app", "dist/main.js#app"]',
  );
  expect(rendered).not.toContain("/app/node_modules/ociapp/bin/ociapp.js");
});
