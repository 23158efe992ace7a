// The code blocks of the READMEs, and what each needs to run (docs that run: issue 15 part 6).
//
// A block runs as written, by its language: `ts` (type-checked with strict and no skipLibCheck, then
// run with tsx), `js` (run with plain node), `sh` (bash, from the repository root), `json` (an
// "ociapp" package.json config checked by ociapp-build's parser, or protocol frames checked by the
// SDK's message parsers). An HTML comment on the line before the fence says what else it needs:
//
//   <!-- docs-test: needs engine -->            the Docker engine
//   <!-- docs-test: needs artifact echo -->     dist/echo-app-0.1.0.ociapp built from examples/echo-app
//                                               (likewise jq: examples/jq-app); implies the engine
//   <!-- docs-test: needs app -->               (ts) `app`, the echo app, in scope
//   <!-- docs-test: needs built echo-app -->    examples/echo-app/dist (its build script)
//   <!-- docs-test: needs agent -->             the remote demo's agent listening on 127.0.0.1:8443,
//                                               its token and CA in /tmp/ociapp-remote-demo
//   <!-- docs-test: needs kubernetes -->        (sh) a cluster: scripts/k8s.sh's, started with `up`,
//                                               KUBECONFIG and its kubectl on PATH; what the blocks
//                                               apply from deploy/kubernetes is deleted afterwards
//   <!-- docs-test: needs registry -->          a fresh npm project whose registry has the packages
//                                               (run by scripts/registry-test.sh, after publishing)
//   <!-- docs-test: needs tarballs -->          a fresh npm project holding the three packed tarballs
//                                               (run by scripts/registry-test.sh, before publishing)
//   <!-- docs-test: flags of <command> -->      a usage summary: every --flag in it is in `<command> --help`
//   <!-- docs-test: skip (<reason>) -->         not code that runs (a diagram, a file list): say why
//
// Several directives are separated by ";" (outside parentheses). Blocks of any other language need `flags of` or `skip`.
//
//   node --import tsx tests/docs/blocks.ts emit <needs> <dir>   writes the blocks that need <needs>
//                                                               to <dir>/NN.sh, one line each on stdout

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The Markdown files whose blocks must run: the README and every package's README. */
export const DOCS = [
  "README.md",
  "packages/ociapp/README.md",
  "packages/ociapp-build/README.md",
  "packages/ociapp-runtime/README.md",
  "examples/echo-app/README.md",
  "examples/jq-app/README.md",
];

export const RUNNABLE = new Set(["ts", "js", "sh", "json"]);
const NEEDS = /^needs (engine|app|agent|kubernetes|registry|tarballs|artifact (?:echo|jq)|built echo-app)$/;

export interface Block {
  /** The Markdown file, relative to the repository root, and the line of the opening fence. */
  file: string;
  line: number;
  lang: string;
  code: string;
  needs: string[];
  skip?: string;
  flagsOf?: string;
}

/** `where` for messages: README.md:82. */
export const where = (block: Pick<Block, "file" | "line">) => `${block.file}:${block.line}`;

/** The fenced blocks of one Markdown text, each with its docs-test directives; throws on a bad one. */
export function extractBlocks(file: string, markdown: string): Block[] {
  const lines = markdown.split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i] ?? "");
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] ?? ""); i++) body.push(lines[i] ?? "");
    if (i >= lines.length) throw new Error(`${file}:${start + 1}: a code block that is never closed`);
    const block: Block = {
      file,
      line: start + 1,
      lang: open[1] ?? "",
      code: `${body.join("\n")}\n`,
      needs: [],
    };
    let previous = start - 1;
    while (previous >= 0 && (lines[previous] ?? "").trim() === "") previous--;
    const marker = /^<!--\s*docs-test:\s*(.*?)\s*-->$/.exec((lines[previous] ?? "").trim());
    for (const directive of marker ? splitDirectives(marker[1] ?? "") : []) {
      const skip = /^skip \((.+)\)$/.exec(directive);
      const flags = /^flags of (.+)$/.exec(directive);
      if (skip?.[1]?.trim()) block.skip = skip[1].trim();
      else if (flags?.[1]) block.flagsOf = flags[1];
      else if (NEEDS.test(directive)) block.needs.push(directive.slice("needs ".length));
      else throw new Error(`${where(block)}: unknown docs-test directive "${directive}"`);
    }
    if (!RUNNABLE.has(block.lang) && block.skip === undefined && block.flagsOf === undefined) {
      throw new Error(
        `${where(block)}: a \`${block.lang || "plain"}\` block neither runs nor says why: add <!-- docs-test: skip (reason) --> or flags of <command>`,
      );
    }
    blocks.push(block);
  }
  return blocks;
}

/** "a; b (c; d)" → ["a", "b (c; d)"]: a skip's reason may hold ";". */
function splitDirectives(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = "";
  for (const char of text) {
    if (char === "(") depth++;
    if (char === ")") depth = Math.max(0, depth - 1);
    if (char === ";" && depth === 0) {
      parts.push(current.trim());
      current = "";
    } else current += char;
  }
  parts.push(current.trim());
  return parts.filter((part) => part !== "");
}

/** Every block of every file in DOCS. */
export function allBlocks(): Block[] {
  return DOCS.flatMap((file) => extractBlocks(file, readFileSync(join(ROOT, file), "utf8")));
}

/** Blocks that scripts/registry-test.sh runs (they need a registry or the tarballs). */
export const RUN_ELSEWHERE = new Set(["registry", "tarballs"]);

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [command, needs, dir] = process.argv.slice(2);
  if (command !== "emit" || !needs || !dir) {
    console.error("usage: node --import tsx tests/docs/blocks.ts emit <needs> <dir>");
    process.exit(2);
  }
  mkdirSync(dir, { recursive: true });
  const chosen = allBlocks().filter((block) => block.needs.includes(needs) && block.skip === undefined);
  chosen.forEach((block, index) => {
    if (block.lang !== "sh") throw new Error(`${where(block)}: only sh blocks can need ${needs}`);
    const path = join(dir, `${String(index + 1).padStart(2, "0")}.sh`);
    writeFileSync(path, block.code);
    console.log(`${path} ${where(block)}`);
  });
}
