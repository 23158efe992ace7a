import { describe, expect, it } from "vitest";
import { csv } from "../src/buildx.js";
import { artifactFileName } from "../src/naming.js";
import {
  dependencyNameProblem,
  MAX_ARTIFACT_FILE_NAME,
  npmNameProblem,
  semverProblem,
} from "../src/package-name.js";

describe("npmNameProblem (npm's rules for new packages)", () => {
  it("accepts npm's own examples and the names this repository uses", () => {
    for (const name of [
      "some-package",
      "example.com",
      "under_score",
      "123numeric",
      "@npm/thingy",
      "@jane/foo.js",
      "@acme/standalone-echo",
      "echo-app",
      "a",
      "a".repeat(214),
      "http", // a core module's name: npm only warns
    ]) {
      expect(npmNameProblem(name), name).toBeUndefined();
    }
  });

  it.each([
    ["", "it is empty"],
    ["victim\nx", "it holds a space or a control character"],
    ["app\r", "it holds a space or a control character"],
    ["a\u001b[2J", "it holds a space or a control character"],
    ["a\u009bb", "it holds a space or a control character"],
    [" app", "it holds a space or a control character"],
    ["my app", "it holds a space or a control character"],
    ["a".repeat(215), "it is 215 characters long, over npm's 214"],
    ["a".repeat(300), "it is 300 characters long, over npm's 214"],
    ["MyApp", "it has uppercase letters (npm names are lowercase)"],
    [".hidden", 'it starts with "."'],
    ["..", 'it starts with "."'],
    ["../x", 'it starts with "."'],
    ["_private", 'it starts with "_"'],
    ["-flag", 'it starts with "-"'],
    ["node_modules", "npm reserves it"],
    ["favicon.ico", "npm reserves it"],
    ["a/../../b", "it holds characters npm does not allow"],
    ["a/b", "it holds characters npm does not allow"],
    ["/etc/passwd", "it holds characters npm does not allow"],
    ["crazy!", "it holds characters npm does not allow"],
    ["café", "it holds characters npm does not allow"],
    ["a\u202eb", "it holds characters npm does not allow"],
    ["a%2fb", "it holds characters npm does not allow"],
    ["@scope", 'a scoped name is "@scope/name", with one "/"'],
    ["@scope/a/b", 'a scoped name is "@scope/name", with one "/"'],
    ["@/x", 'a scoped name is "@scope/name", with one "/"'],
    ["@scope/.x", 'its package part starts with "."'],
    ["@../x", 'its scope starts with "."'],
    ["@sc ope/x", "it holds a space or a control character"],
  ])("%j: %s", (name, problem) => {
    expect(npmNameProblem(name)).toMatch(new RegExp(`^${problem.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
  });

  it("every accepted name flattens to one file name in the output folder", () => {
    for (const name of ["@acme/echo", "@a~b/c", "echo-app", "x"]) {
      expect(npmNameProblem(name)).toBeUndefined();
      const file = artifactFileName(name, "1.0.0");
      expect(file).not.toMatch(/[/\\]|^\./);
    }
    expect(artifactFileName("@acme/echo", "1.0.0-rc.1+sha.5")).toBe("acme-echo-1.0.0-rc.1+sha.5.ociapp");
  });
});

describe("dependencyNameProblem (npm's rules for existing packages)", () => {
  it("accepts old-style names, which dependencies may have", () => {
    for (const name of ["JSONStream", "@types/node", "zod", "crazy!", "a".repeat(300)]) {
      expect(dependencyNameProblem(name), name).toBeUndefined();
    }
  });

  it("refuses paths and names npm never allowed", () => {
    for (const name of [
      "",
      "../x",
      "..",
      "a/b",
      "/etc",
      "@scope/.x",
      ".bin",
      "a\nb",
      "a b",
      "node_modules",
    ]) {
      expect(dependencyNameProblem(name), name).toBeDefined();
    }
  });
});

describe("semverProblem", () => {
  it("accepts SemVer 2.0.0 versions", () => {
    for (const version of ["0.1.0", "1.2.3", "1.0.0-rc.1", "1.0.0-alpha.beta+exp.sha.5", "10.20.30"]) {
      expect(semverProblem(version), version).toBeUndefined();
    }
  });

  it.each([
    ["1.0.0\n../../victim", "it is not a semver version"],
    ["../1.0.0", "it is not a semver version"],
    ["1.0.0/x", "it is not a semver version"],
    ["1.0", "it is not a semver version"],
    ["v1.0.0", "it is not a semver version"],
    ["=1.0.0", "it is not a semver version"],
    ["01.0.0", "it is not a semver version"],
    ["1.0.0 ", "it is not a semver version"],
    ["latest", "it is not a semver version"],
    ["1.0.0-\u001b[2J", "it is not a semver version"],
    [`1.0.0-${"a".repeat(300)}`, "it is 306 characters long, over semver's 256"],
    ["9007199254740992.0.0", "a number in it is too large"],
  ])("%j: %s", (version, problem) => {
    expect(semverProblem(version)).toMatch(new RegExp(`^${problem}`));
  });

  it("a name and version within their limits can still make too long a file name", () => {
    const file = artifactFileName("a".repeat(214), `1.0.0-${"b".repeat(40)}`);
    expect(file.length).toBeGreaterThan(MAX_ARTIFACT_FILE_NAME);
  });
});

describe("csv (buildx's --output record)", () => {
  it("quotes fields with a comma, a quote or a line break, so that none ends the record", () => {
    expect(csv(["type=oci", "dest=/out/a,b", 'name=x"y', "dest=/o\nut/x", "dest=/o\rut"])).toBe(
      'type=oci,"dest=/out/a,b","name=x""y","dest=/o\nut/x","dest=/o\rut"',
    );
  });
});
