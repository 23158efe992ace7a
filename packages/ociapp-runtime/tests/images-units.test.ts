import { describe, expect, it } from "vitest";
import { detectFlavour } from "../src/engines/docker/flavour.js";
import type { EngineImage } from "../src/engines/engine.js";
import { EngineUnavailableError, OptionsError } from "../src/errors.js";
import { artifactReference, parseRuntimeName, usedTag } from "../src/images/names.js";
import { planRetention, RECENT_USE_MS, STALE_LOAD_MS } from "../src/images/retention.js";
import { ZstdFormatError, ZstdFrameWalker } from "../src/images/zstd-frames.js";
import { resolveOptions } from "../src/options.js";
import { zstdFrame, zstdRaw } from "./support/oci-tar.js";

// The pure parts of image handling: names, the zstd frame walker, engine flavours, the retention
// plan and the options.

const digest = (c: string) => `sha256:${c.repeat(64)}`;

describe("runtime-owned image names", () => {
  it("round-trips the artifact, last-used and loading names, and ignores every other", () => {
    expect(artifactReference(digest("a"))).toBe(`ociapp.invalid/artifact:sha256-${"a".repeat(64)}`);
    expect(parseRuntimeName(artifactReference(digest("a")))).toMatchObject({
      kind: "artifact",
      digest: digest("a"),
    });
    const used = `ociapp.invalid/used:${usedTag(digest("b"), 1_700_000_000_123)}`;
    expect(parseRuntimeName(used)).toMatchObject({
      kind: "used",
      digest: digest("b"),
      at: 1_700_000_000_123,
    });
    expect(parseRuntimeName("ociapp.invalid/loading:1700000000123-0a1b")).toMatchObject({ kind: "loading" });
    for (const other of [
      "node:20-bookworm-slim",
      "ociapp.invalid/artifact:latest",
      "docker.io/ociapp.invalid/artifact:x",
    ]) {
      expect(parseRuntimeName(other)).toBeUndefined();
    }
  });
});

describe("ZstdFrameWalker", () => {
  it("cuts at every block end, bounds the output, and accepts split input", () => {
    const frame = zstdFrame([{ raw: Buffer.alloc(1000) }, { rle: 1, size: 5000 }, { raw: Buffer.alloc(10) }]);
    const whole = new ZstdFrameWalker(1 << 20);
    expect(whole.push(frame)).toEqual([6 + 3 + 1000, 6 + 3 + 1000 + 4, frame.length]);
    whole.end();
    expect(whole.bound).toBe(6010);
    const split = new ZstdFrameWalker(1 << 20);
    const cuts: number[] = [];
    for (let i = 0; i < frame.length; i += 7) {
      for (const cut of split.push(frame.subarray(i, i + 7))) cuts.push(i + cut);
    }
    split.end();
    expect(cuts).toEqual([1009, 1013, frame.length]);
  });

  it("walks skippable frames and several frames in a row", () => {
    const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0]), Buffer.from("abc")]);
    const walker = new ZstdFrameWalker(1 << 20);
    walker.push(Buffer.concat([zstdRaw(Buffer.alloc(10)), skippable, zstdRaw(Buffer.alloc(20))]));
    walker.end();
    expect(walker.bound).toBe(30);
    expect(walker.frames).toBe(3);
  });

  it("refuses windows over the limit, dictionaries, reserved block types and truncation", () => {
    expect(() => new ZstdFrameWalker(1 << 20).push(zstdFrame([{ raw: Buffer.alloc(1) }], 21))).toThrow(
      ZstdFormatError,
    );
    expect(() => new ZstdFrameWalker(1 << 20).push(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x02]))).toThrow(
      /dictionary/,
    );
    const reserved = Buffer.concat([
      zstdFrame([{ raw: Buffer.alloc(1) }]).subarray(0, 6),
      Buffer.from([0x07, 0, 0]),
    ]);
    expect(() => new ZstdFrameWalker(1 << 20).push(reserved)).toThrow(/reserved type/);
    const truncated = new ZstdFrameWalker(1 << 20);
    truncated.push(zstdRaw(Buffer.alloc(100)).subarray(0, 50));
    expect(() => truncated.end()).toThrow(/ends inside a frame/);
  });
});

describe("detectFlavour", () => {
  const where = "the test engine";
  it("tells Docker's containerd store, its classic store and Podman apart", () => {
    const snapshotter: [string, string][] = [["driver-type", "io.containerd.snapshotter.v1"]];
    expect(
      detectFlavour({ info: { ServerVersion: "26.1.5", DriverStatus: snapshotter }, version: {} }, where),
    ).toMatchObject({
      store: "containerd",
      imageIdIsManifestDigest: true,
      dockerArchiveManifest: false,
      dieEventFilter: "die",
    });
    expect(
      detectFlavour({ info: { ServerVersion: "26.1.5", DriverStatus: [] }, version: {} }, where),
    ).toMatchObject({
      store: "classic",
      imageIdIsManifestDigest: false,
      dockerArchiveManifest: true,
      dieEventFilter: "die",
    });
    expect(
      detectFlavour(
        {
          info: { ServerVersion: "4.3.1" },
          version: { Components: [{ Name: "Podman Engine", Version: "4.3.1" }] },
        },
        where,
      ),
    ).toMatchObject({
      store: "podman",
      imageIdIsManifestDigest: false,
      dockerArchiveManifest: false,
      dieEventFilter: "died",
    });
  });

  it("refuses Docker before 25 and Podman before 4", () => {
    expect(() => detectFlavour({ info: { ServerVersion: "24.0.7" }, version: {} }, where)).toThrow(
      EngineUnavailableError,
    );
    expect(() =>
      detectFlavour(
        { info: {}, version: { Components: [{ Name: "Podman Engine", Version: "3.4.4" }] } },
        where,
      ),
    ).toThrow(/Podman 3.4.4 .* too old/);
  });
});

describe("planRetention", () => {
  const now = 1_800_000_000_000;
  const hour = 3_600_000;
  const image = (
    id: string,
    lastUsedAgo: number,
    size = 100,
    extra: Partial<EngineImage> = {},
  ): EngineImage => ({
    id,
    names: [artifactReference(digest(id)), `ociapp.invalid/used:${usedTag(digest(id), now - lastUsedAgo)}`],
    artifacts: [digest(id)],
    size,
    lastUsed: now - lastUsedAgo,
    inUse: false,
    ...extra,
  });
  const plan = (
    images: EngineImage[],
    rules: { idleTimeout: number; maxBytes: number },
    active = new Set<string>(),
  ) => planRetention({ images, now, active, ...rules }).map((removal) => [removal.image.id, removal.reason]);

  it("removes images idle for idleTimeout, never one in use or active here, records before the artifact name", () => {
    const images = [
      image("a", 25 * hour),
      image("b", 25 * hour, 100, { inUse: true }),
      image("c", 25 * hour),
      image("d", 2 * hour),
      image("e", 25 * hour, 100, { lastUsed: 0, names: [artifactReference(digest("e"))] }),
    ];
    expect(plan(images, { idleTimeout: 24 * hour, maxBytes: 0 }, new Set([digest("c")]))).toEqual([
      ["a", "idle"],
      ["e", "idle"],
    ]);
    const [removal] = planRetention({ images, now, active: new Set(), idleTimeout: 24 * hour, maxBytes: 0 });
    expect(removal?.names.at(-1)).toBe(artifactReference(digest("a")));
  });

  it("over maxBytes removes the least recently used first, never one used recently", () => {
    const images = [
      image("a", 5 * hour, 400),
      image("b", 3 * hour, 400),
      image("c", 4 * hour, 400),
      image("d", RECENT_USE_MS / 2, 400),
      image("e", 6 * hour, 400, { inUse: true }),
    ];
    // 2000 bytes against a budget of 900: a (oldest), c, b go; d is recent, e in use.
    expect(plan(images, { idleTimeout: 0, maxBytes: 900 })).toEqual([
      ["a", "budget"],
      ["c", "budget"],
      ["b", "budget"],
    ]);
    expect(plan(images, { idleTimeout: 0, maxBytes: 1300 })).toEqual([
      ["a", "budget"],
      ["c", "budget"],
    ]);
  });

  it("removes loading names a dead load left, and leaves loads in progress alone", () => {
    const loading = (id: string, ago: number): EngineImage => ({
      id,
      names: [`ociapp.invalid/loading:${now - ago}-ab`],
      artifacts: [],
      size: 10,
      lastUsed: 0,
      inUse: false,
    });
    const tagged = image("c", 1000);
    tagged.names.push(`ociapp.invalid/loading:${now - STALE_LOAD_MS - 1}-cd`);
    const removals = planRetention({
      images: [loading("a", STALE_LOAD_MS + 1), loading("b", 60_000), tagged],
      now,
      active: new Set(),
      idleTimeout: hour,
      maxBytes: 0,
    });
    expect(removals.map((removal) => [removal.image.id, removal.names])).toEqual([
      ["a", [`ociapp.invalid/loading:${now - STALE_LOAD_MS - 1}-ab`]],
      ["c", [`ociapp.invalid/loading:${now - STALE_LOAD_MS - 1}-cd`]],
    ]);
  });

  it("removes at most maxRemovals per pass", () => {
    const images = Array.from({ length: 40 }, (_, i) =>
      image(i.toString(16).padStart(2, "0").slice(-1), 48 * hour),
    );
    expect(planRetention({ images, now, active: new Set(), idleTimeout: hour, maxBytes: 0 })).toHaveLength(
      16,
    );
  });
});

describe("image options", () => {
  it("defaults: 24 h idle, no byte budget, a pass a minute, 4 GiB unpacked", () => {
    const options = resolveOptions({});
    expect(options.images).toEqual({ idleTimeout: 86_400_000, maxBytes: 0, interval: 60_000 });
    expect(options.maxUnpackedBytes).toBe(4 * 1024 ** 3);
  });

  it("names the option and the value it refuses", () => {
    const cases: [unknown, string][] = [
      [{ images: 5 }, "Runtime option images must be an object (got 5)"],
      [{ images: { idleTimeout: -1 } }, "Runtime option images.idleTimeout must be an integer >= 0 (got -1)"],
      [{ images: { maxBytes: 1.5 } }, "Runtime option images.maxBytes must be an integer"],
      [{ images: { interval: 1 } }, "Runtime option images.interval must be an integer >= 10 (got 1)"],
      [{ images: { keep: 3 } }, "Runtime option images.keep is not a known option"],
      [{ maxUnpackedBytes: 1000 }, "Runtime option maxUnpackedBytes must be an integer between 1048576 and"],
    ];
    for (const [options, message] of cases) {
      expect(() => resolveOptions(options as never)).toThrow(OptionsError);
      expect(() => resolveOptions(options as never)).toThrow(message);
    }
  });
});
