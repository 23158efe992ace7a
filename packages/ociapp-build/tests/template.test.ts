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
