/**
 * `--version`: the version from deno.json, and the commit a build was stamped with.
 *
 * @module
 */

import assert from "node:assert/strict";
import denoConfig from "../deno.json" with { type: "json" };
import { BUILD, VERSION, versionLine } from "../lib/version.ts";

Deno.test("the repository's build info names no commit, so a run from source says so", () => {
  assert.deepEqual(BUILD, { commit: null });
  assert.equal(VERSION, denoConfig.version);
  assert.equal(versionLine("server"), `aeschat server ${denoConfig.version} (source)`);
});

Deno.test("versionLine names the commit an executable was built from", () => {
  const commit = "0123456789abcdef0123456789abcdef01234567";
  assert.equal(versionLine("client", { commit }), `aeschat client ${denoConfig.version} (commit ${commit})`);
  assert.equal(
    versionLine("server", { commit: `${commit}-dirty` }),
    `aeschat server ${denoConfig.version} (commit ${commit}-dirty)`,
  );
});
