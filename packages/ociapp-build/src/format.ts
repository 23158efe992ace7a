import { type ArtifactInfo, printable } from "ociapp/artifact";

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * The human form of `ociapp-build inspect`: one line per field, one per layer. Every string comes from
 * the artifact (or, for the path, from whoever named the file) and is shown through `printable`:
 * control characters, newlines, C1 controls and bidi overrides as `\uXXXX`, so that an artifact cannot
 * forge a line, move the cursor or reorder what the terminal shows.
 */
export function formatArtifactInfo(path: string, info: ArtifactInfo): string {
  const show = (value: string | undefined) => (value === undefined ? "(none)" : printable(value));
  const lines = [
    `file:       ${show(path)}`,
    `name:       ${show(info.title)}`,
    `version:    ${show(info.version)}`,
    `entrypoint: ${show(info.entrypoint)}`,
    `image:      ${show(info.refName)}`,
    `digest:     ${show(info.digest)}`,
    `bytes:      ${info.bytes} (${formatBytes(info.bytes)})`,
    `layers:     ${info.layers.length}`,
    ...info.layers.map(
      (layer) => `  ${show(layer.digest)}  ${formatBytes(layer.size).padStart(10)}  ${show(layer.mediaType)}`,
    ),
  ];
  return `${lines.join("\n")}\n`;
}
