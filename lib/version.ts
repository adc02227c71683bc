/**
 * What `--version` prints: the version from deno.json and, in an executable, the git commit it was built from. The
 * commit comes from build_info.json, which says `null` in the repository; tools/release.ts writes the commit into its
 * own copy of the source before compiling, so a run from source says "source" and the tree is never touched.
 *
 * @module
 */

import denoConfig from "../deno.json" with { type: "json" };
import buildInfo from "./build_info.json" with { type: "json" };

/** The version of aeschat, from deno.json. */
export const VERSION: string = denoConfig.version;

/** What the release script stamps into build_info.json. */
export interface BuildInfo {
  /** The git commit the executable was built from (`<sha>-dirty` if the tree had local changes), or null. */
  commit: string | null;
}

/** This build: `{ commit: null }` when running from source. */
export const BUILD: BuildInfo = buildInfo;

/**
 * The line `--version` prints.
 *
 * @example
 * ```ts
 * versionLine("server", { commit: null }); // "aeschat server 0.1.0 (source)"
 * versionLine("client", { commit: "0123abc…" }); // "aeschat client 0.1.0 (commit 0123abc…)"
 * ```
 *
 * @param program which program is asking
 * @param build the build to describe (default: this one)
 * @returns one line, without a line break
 */
export function versionLine(program: "server" | "client", build: BuildInfo = BUILD): string {
  return `aeschat ${program} ${VERSION} (${build.commit === null ? "source" : `commit ${build.commit}`})`;
}
