/**
 * Summarizes V8 CPU profiles (`deno run --cpu-prof`, or `deno task bench --profile DIR`): the functions with the
 * most self time, and the most total time, across every .cpuprofile file given or found in the directories given.
 *
 * Run: `deno run --allow-read bench/cpu_profile.ts DIR_OR_FILE... [--top N]`
 *
 * @module
 */

import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url.replace(/^file:\/\/.*?\/(lib|bench|tests)\//, "$1/").replace(/^ext:/, "ext:");
  return `${functionName || "(anonymous)"} ${file ? `${file}:${lineNumber + 1}` : ""}`.trim();
}

/**
 * Adds one profile's self and total times (in ms) per function label into the maps.
 *
 * @param profile the parsed profile
 * @param totals.self self time per function
 * @param totals.total time including callees per function
 * @returns the profile's sampled duration in ms
 */
export function accumulate(
  profile: Profile,
  totals: { self: Map<string, number>; total: Map<string, number> },
): number {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  let duration = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    duration += ms;
    const leaf = byId.get(profile.samples[i])!;
    const name = label(leaf);
    totals.self.set(name, (totals.self.get(name) ?? 0) + ms);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const l = label(byId.get(id)!);
      if (seen.has(l)) continue;
      seen.add(l);
      totals.total.set(l, (totals.total.get(l) ?? 0) + ms);
    }
  }
  return duration;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { top: { type: "string", default: "25" } },
  });
  const files: string[] = [];
  for (const p of positionals) {
    if ((await Deno.stat(p)).isDirectory) {
      for await (const e of Deno.readDir(p)) if (e.name.endsWith(".cpuprofile")) files.push(`${p}/${e.name}`);
    } else files.push(p);
  }
  const totals = { self: new Map<string, number>(), total: new Map<string, number>() };
  let duration = 0;
  for (const f of files) duration += accumulate(JSON.parse(await Deno.readTextFile(f)), totals);
  const top = Number(values.top);
  const show = (title: string, map: Map<string, number>) => {
    console.log(`${title} (of ${duration.toFixed(0)} ms sampled in ${files.length} profile(s))`);
    for (const [name, ms] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`${ms.toFixed(0).padStart(8)} ms ${((ms / duration) * 100).toFixed(1).padStart(5)}%  ${name}`);
    }
  };
  show("self time", totals.self);
  console.log("");
  show("total time", totals.total);
}

if (import.meta.main) await main();
