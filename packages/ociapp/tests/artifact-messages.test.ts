import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ArtifactFormatError,
  inspectArtifact,
  PROTOCOL_ANNOTATION,
  readArtifactIndex,
} from "ociapp/artifact";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeLayout, type TarFile, writeLayout } from "./artifact-fixtures.js";

// ArtifactFormatError messages reach terminals and logs (ociapp-build's error line, the runtime's
// ArtifactError): the artifact's own strings in them are quoted with control characters escaped.

let dir = "";
let counter = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ociapp-artifact-messages-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function layoutFile(files: TarFile[]): Promise<string> {
  const path = join(dir, `artifact-${++counter}.ociapp`);
  await writeLayout(path, files);
  return path;
}

function firstManifest(index: Record<string, unknown>): Record<string, unknown> {
  return (index.manifests as Record<string, unknown>[])[0]!;
}

/** Both readers reject with a message holding `expected` and no raw control or bidi character. */
async function expectEscaped(path: string, expected: string): Promise<void> {
  for (const read of [readArtifactIndex, inspectArtifact]) {
    const error = await read(path).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ArtifactFormatError);
    const { message } = error as Error;
    expect(message).toContain(expected);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters a message must not carry
    expect(message).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
  }
}

describe("malformed artifacts", () => {
  it("messages show what the artifact wrote with its control characters escaped", async () => {
    // Each string would clear the screen, retitle the terminal, start a new line or reverse the text
    // that follows if printed raw.
    const hostile = "\u001b[2J\u001b]0;owned\u0007\r\nfake line\u009b31m\u202eevil\u2066";
    const shown = "\\u001b[2J\\u001b]0;owned\\u0007\\u000d\\u000afake line\\u009b31m\\u202eevil\\u2066";
    const files = makeLayout().files;
    const duplicate = { name: `blobs/${hostile}`, body: Buffer.from("x") };
    await expectEscaped(
      await layoutFile([duplicate, duplicate, ...files]),
      `duplicate tar entry "blobs/${shown}"`,
    );
    const key = makeLayout({ manifest: (m) => Object.assign(m.annotations as object, { [hostile]: 1 }) });
    await expectEscaped(await layoutFile(key.files), `annotation "${shown}" is not a string`);
    const mediaType = makeLayout({ index: (i) => Object.assign(firstManifest(i), { mediaType: hostile }) });
    await expectEscaped(
      await layoutFile(mediaType.files),
      `index.json points at "${shown}", not an image manifest`,
    );
    const protocol = makeLayout({
      manifest: (m) => Object.assign(m.annotations as object, { [PROTOCOL_ANNOTATION]: "\u009b2J\n" }),
    });
    await expectEscaped(await layoutFile(protocol.files), 'is "\\u009b2J\\u000a", not a protocol version');
  });
});
