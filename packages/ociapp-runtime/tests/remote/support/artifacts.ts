import { writeFile } from "node:fs/promises";
import { readArtifactIndex } from "ociapp/artifact";
import { makeLayout, tarBuffer } from "../../../../ociapp/tests/artifact-fixtures.js";
import { ProcessEngine } from "../../support/process-engine.js";

/**
 * Writes a small synthetic artifact (a valid OCI image layout tar; the process engine runs the
 * behaviours fixture for any image) and returns its path, digest and bytes. `salt` changes the
 * manifest, so each salt is another artifact.
 */
export async function writeArtifact(
  path: string,
  salt = "a",
): Promise<{ path: string; digest: string; bytes: Buffer }> {
  const layout = makeLayout({
    manifest: (manifest) => {
      (manifest.annotations as Record<string, string>)["dev.ociapp.test-salt"] = salt;
      (manifest.annotations as Record<string, string>)["dev.ociapp.protocol"] = "2";
    },
  });
  const bytes = await tarBuffer(layout.files);
  await writeFile(path, bytes);
  return { path, digest: layout.manifestDigest, bytes };
}

/** The process engine, loading whatever artifact file it is given by reading its digest. */
export class ArtifactProcessEngine extends ProcessEngine {
  override async loadImage(path: string): Promise<void> {
    const { digest } = await readArtifactIndex(path);
    this.artifacts.set(path, digest);
    await super.loadImage(path);
  }
}
