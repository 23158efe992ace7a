# shellcheck shell=bash
# Shared helpers for scripts/engine.sh and scripts/engines/*.sh. Sourced, not run.
# The sourcing script sets LOG_TAG (the prefix of its messages) before sourcing this file.

CACHE_DIR=${OCIAPP_ENGINE_CACHE:-/var/cache/ociapp-engine}

say() { printf '[%s] %s\n' "${LOG_TAG:-engine}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${LOG_TAG:-engine}" "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root"; }

# wait_until SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds; fails after SECONDS.
wait_until() {
  local limit=$1 start=$SECONDS
  shift
  while ! "$@" >/dev/null 2>&1; do
    [ $((SECONDS - start)) -lt "$limit" ] || return 1
    sleep 0.2
  done
}

# Milliseconds since the epoch (for the timings the scripts print).
now_ms() { date +%s%3N; }

# The Debian mirror this machine's own apt sources use for its release (the first "deb" entry whose
# suite is the release's codename and whose components include main), or OCIAPP_DEBIAN_MIRROR.
# deb822 files (*.sources) first, then the one-line format (*.list, /etc/apt/sources.list).
debian_mirror() {
  if [ -n "${OCIAPP_DEBIAN_MIRROR:-}" ]; then
    printf '%s\n' "$OCIAPP_DEBIAN_MIRROR"
    return 0
  fi
  local codename file uri
  codename=$(. /etc/os-release 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || die "cannot tell this machine's Debian release (no VERSION_CODENAME in /etc/os-release); set OCIAPP_DEBIAN_MIRROR"
  for file in "${APT_ETC:-/etc/apt}"/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    uri=$(awk -v want="$codename" '
      function flush(   n, u) {
        if ((" " types " ") ~ / deb / && tolower(enabled) != "no" &&
            (" " suites " ") ~ (" " want " ") && (" " comps " ") ~ / main /) {
          n = split(uris, u, " ")
          if (n > 0 && u[1] ~ /^(https?|file):/) { print u[1]; found = 1; exit }
        }
        types = uris = suites = comps = enabled = key = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { value = $0; sub(/^[ \t]+/, "", value); append(key, value); next }
      {
        key = tolower($0); sub(/:.*/, "", key)
        value = $0; sub(/^[^:]*:[ \t]*/, "", value)
        append(key, value)
      }
      function append(k, v) {
        if (k == "types") types = types " " v
        else if (k == "uris") uris = uris " " v
        else if (k == "suites") suites = suites " " v
        else if (k == "components") comps = comps " " v
        else if (k == "enabled") enabled = v
      }
      END { if (!found) flush() }
    ' "$file")
    if [ -n "$uri" ]; then printf '%s\n' "${uri%/}"; return 0; fi
  done
  for file in "${APT_ETC:-/etc/apt}"/sources.list "${APT_ETC:-/etc/apt}"/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    uri=$(awk -v want="$codename" '
      /^[ \t]*#/ { next }
      {
        line = $0; gsub(/\[[^]]*\]/, "", line)
        n = split(line, f, /[ \t]+/)
        if (f[1] == "" ) { for (i = 1; i < n; i++) f[i] = f[i + 1]; n-- }
        if (f[1] != "deb" || f[3] != want || f[2] !~ /^(https?|file):/) next
        for (i = 4; i <= n; i++) if (f[i] == "main") { print f[2]; exit }
      }' "$file")
    if [ -n "$uri" ]; then printf '%s\n' "${uri%/}"; return 0; fi
  done
  die "no Debian mirror for $codename in /etc/apt/sources.list.d/*.sources, *.list or /etc/apt/sources.list; set OCIAPP_DEBIAN_MIRROR"
}

# trixie_download PACKAGE...: fetches Debian trixie's .deb files of PACKAGE... into $CACHE_DIR/debs
# without touching the system's apt sources (a private deb822 sources folder and private lists),
# from the mirror the machine's own sources use. Packages already downloaded are not fetched again.
trixie_download() {
  local src="$CACHE_DIR/apt-sources" lists="$CACHE_DIR/apt-lists" debs="$CACHE_DIR/debs"
  local missing=() pkg
  for pkg in "$@"; do
    compgen -G "$debs/${pkg}_*.deb" >/dev/null || missing+=("$pkg")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local mirror
  mirror=$(debian_mirror)
  mkdir -p "$src" "$lists/partial" "$debs"
  cat >"$src/trixie.sources" <<SRC
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  local opts=(-oDir::Etc::SourceList=/dev/null "-oDir::Etc::SourceParts=$src" "-oDir::State::Lists=$lists")
  local log="$CACHE_DIR/apt-download.log"
  say "downloading trixie's ${missing[*]} from $mirror (log: $log)"
  {
    timeout 300 apt-get "${opts[@]}" -q update
    # apt's _apt user cannot write into a root-only cache folder; download as root, quietly.
    (cd "$debs" && timeout 600 apt-get "${opts[@]}" -q -oAPT::Sandbox::User=root download "${missing[@]}")
  } >"$log" 2>&1 || die "downloading trixie's ${missing[*]} failed; see $log"
}

# json_put FILE KEY.PATH JSON: sets the value at KEY.PATH (dot-separated; keys may contain "-") in
# the JSON object file FILE (created when missing), replacing what was there, atomically. Other
# keys are kept. Prints "changed" or "same".
json_put() {
  # shellcheck disable=SC2016 # JavaScript, not shell
  node -e '
    const fs = require("node:fs");
    const [file, path, valueText] = process.argv.slice(1);
    let config = {};
    try { config = JSON.parse(fs.readFileSync(file, "utf8")); }
    catch (error) { if (error.code !== "ENOENT") { console.error(`${file}: ${error.message}`); process.exit(2); } }
    const keys = path.split(".");
    let target = config;
    for (const key of keys.slice(0, -1)) {
      if (!target[key] || typeof target[key] !== "object" || Array.isArray(target[key])) target[key] = {};
      target = target[key];
    }
    const last = keys[keys.length - 1];
    const value = JSON.parse(valueText);
    if (JSON.stringify(target[last]) === JSON.stringify(value)) { console.log("same"); process.exit(0); }
    target[last] = value;
    fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(config, null, 2)}\n`);
    fs.renameSync(`${file}.tmp`, file);
    console.log("changed");
  ' "$1" "$2" "$3"
}
