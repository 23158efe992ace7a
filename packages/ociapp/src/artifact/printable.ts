/**
 * Text an artifact or a project controls (annotations, names, tar entry names, media types), made safe
 * to show on a terminal or in a log line: an artifact must not be able to forge lines, move the
 * cursor, retitle the terminal or reorder what is shown. Escaped as `\uXXXX`:
 *
 * - C0 controls U+0000–U+001F (ESC starts terminal sequences; CR and LF forge lines) and DEL U+007F;
 * - C1 controls U+0080–U+009F (U+009B is a one-character CSI on terminals that honour 8-bit controls);
 * - U+2028 and U+2029, which some viewers break lines at;
 * - the bidi embeddings, overrides and isolates U+202A–U+202E and U+2066–U+2069, which reorder the
 *   characters around them ("Trojan Source", CVE-2021-42574).
 *
 * Backslashes are left as they are: the escaping is for display, not a reversible encoding.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
// The same without \t and \n, for multi-line text (a build step's output).
const UNSAFE_KEEPING_LINES =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const toEscape = (char: string) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;

/** `text` on one line: every character listed above, `\n` and `\t` included, as `\uXXXX`. */
export function printable(text: string): string {
  return text.replace(UNSAFE, toEscape);
}

/** `text` with its lines and tabs kept, every other character listed above escaped (`\r` too). */
export function printableLines(text: string): string {
  return text.replace(UNSAFE_KEEPING_LINES, toEscape);
}

/**
 * `text` quoted and made printable, cut to `max` characters (default 80) with "..." so that one
 * hostile value cannot flood a message: for values inside error messages.
 */
export function quote(text: string, max = 80): string {
  let shown = text;
  if (text.length > max) {
    let end = Math.max(0, max - 3);
    // Never split a surrogate pair.
    const code = text.charCodeAt(end - 1);
    if (code >= 0xd800 && code <= 0xdbff) end--;
    shown = `${text.slice(0, end)}...`;
  }
  return `"${printable(shown)}"`;
}

/**
 * JSON.stringify(value) with the characters listed above escaped as JSON `\uXXXX` escapes as well:
 * JSON.stringify escapes only C0 controls, so DEL, C1 and bidi controls would reach the terminal
 * raw. The result parses back to the same value (outside strings JSON has only ASCII).
 */
export function printableJson(value: object): string {
  return JSON.stringify(value).replace(UNSAFE, toEscape);
}
