import { expect, it } from "vitest";
import {
  artifactFileName,
  defaultBaseImage,
  defaultImageReference,
  flattenPackageName,
} from "../src/naming.js";

it("flattens scoped names into the artifact file name", () => {
  expect(flattenPackageName("@acme/echo")).toBe("acme-echo");
  expect(artifactFileName("@acme/echo", "0.1.0")).toBe("acme-echo-0.1.0.ociapp");
  expect(artifactFileName("echo-app", "0.1.0")).toBe("echo-app-0.1.0.ociapp");
});

it("derives a valid image reference from any npm name and version", () => {
  expect(defaultImageReference("echo-app", "0.1.0")).toBe("echo-app:0.1.0");
  expect(defaultImageReference("@acme/echo", "1.0.0-rc.1+sha.5")).toBe("acme/echo:1.0.0-rc.1-sha.5");
  expect(defaultImageReference("My~App", "1.0.0")).toBe("my-app:1.0.0");
});

it("defaults the base image to the build's Node major", () => {
  expect(defaultBaseImage("20.20.2")).toBe("node:20-bookworm-slim");
  expect(defaultBaseImage("22.1.0")).toBe("node:22-bookworm-slim");
  expect(defaultBaseImage()).toBe(`node:${process.versions.node.split(".")[0]}-bookworm-slim`);
});
