import { expect, it } from "vitest";
import { checkCommand } from "../src/custom-check.js";

// Custom mode checks the image's app when its start command runs `ociapp serve`.

it("turns serve into check, keeping the program and its --app", () => {
  expect(
    checkCommand({ Cmd: ["node", "node_modules/ociapp/bin/ociapp.js", "serve", "--app", "main.mjs#app"] }),
  ).toEqual(["node", "node_modules/ociapp/bin/ociapp.js", "check", "--app", "main.mjs#app"]);
  expect(
    checkCommand({
      Entrypoint: ["ociapp"],
      Cmd: ["serve", "--app=dist/main.js#app", "--max-concurrency", "4"],
    }),
  ).toEqual(["ociapp", "check", "--app", "dist/main.js#app"]);
  expect(checkCommand({ Entrypoint: ["npx", "ociapp", "serve"], Env: ["OCIAPP_APP=main.mjs#app"] })).toEqual([
    "npx",
    "ociapp",
    "check",
    "--app",
    "main.mjs#app",
  ]);
});

it("reads plain `sh -c` command lines", () => {
  expect(
    checkCommand({
      Cmd: ["/bin/sh", "-c", "exec node /app/node_modules/ociapp/bin/ociapp.js serve --app main.mjs#app"],
    }),
  ).toEqual(["node", "/app/node_modules/ociapp/bin/ociapp.js", "check", "--app", "main.mjs#app"]);
  // Shell syntax it cannot follow: not checked.
  expect(checkCommand({ Cmd: ["sh", "-c", 'node ociapp.js serve --app "$APP"'] })).toBeUndefined();
});

it("without --app or OCIAPP_APP, check runs without it (and fails as serve would)", () => {
  expect(checkCommand({ Cmd: ["ociapp", "serve"] })).toEqual(["ociapp", "check"]);
});

it("is undefined for images that do not start ociapp serve", () => {
  expect(checkCommand({ Cmd: ["node", "server.js", "serve"] })).toBeUndefined();
  expect(checkCommand({ Entrypoint: null, Cmd: null })).toBeUndefined();
  expect(checkCommand({ Cmd: ["serve"] })).toBeUndefined();
});
