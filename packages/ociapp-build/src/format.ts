import type { ArtifactInfo } from "ociapp/artifact";

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

/** The human form of `ociapp-build inspect`. */
export function formatArtifactInfo(path: string, info: ArtifactInfo): string {
  const lines = [
    `file:       ${path}`,
    `name:       ${info.title ?? "(none)"}`,
    `version:    ${info.version ?? "(none)"}`,
    `entrypoint: ${info.entrypoint ?? "(none)"}`,
    `image:      ${info.refName ?? "(none)"}`,
    `digest:     ${info.digest}`,
    `bytes:      ${info.bytes} (${formatBytes(info.bytes)})`,
    `layers:     ${info.layers.length}`,
    ...info.layers.map(
      (layer) => `  ${layer.digest}  ${formatBytes(layer.size).padStart(10)}  ${layer.mediaType}`,
    ),
  ];
  return `${lines.join("\n")}\n`;
}
