/**
 * Command-line flags from one table: parsing with `node:util` parseArgs, range checks, defaults, and the option
 * lines of `--help`. Both programs describe their flags with it, so help and parsing cannot drift apart.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Raised for a bad flag or flag value; the message is one line for the user. */
export class UsageError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** One flag: its name, the config key it fills, how its value is read, its default and help. */
export interface FlagSpec<K extends string = string> {
  /** The flag without dashes, such as "max-frame". */
  name: string;
  /** A one-letter alias, such as "h" for -h. */
  short?: string;
  /** The configuration key it sets. */
  key: K;
  /** How the value is read. */
  kind: "string" | "int" | "number" | "boolean" | "choice";
  /** Used when the flag is absent. */
  default?: string | number | boolean;
  /** Allowed values of a "choice" flag. */
  choices?: readonly string[];
  /** Smallest allowed value of a number. */
  min?: number;
  /** Largest allowed value of a number. */
  max?: number;
  /** The value's name in --help (default VALUE). */
  arg?: string;
  /** One line for --help. */
  help: string;
  /** A string flag that may be given several times: its value is the array of every value, in order. */
  multiple?: boolean;
}

/**
 * The option lines of --help, one per flag, with the defaults.
 *
 * @example
 * ```ts
 * flagHelp([{ name: "port", key: "port", kind: "int", default: 5000, help: "TCP port" }]);
 * // ["  --port VALUE                 TCP port (default 5000)"]
 * ```
 * @param table the flags
 * @returns the lines
 */
export function flagHelp(table: readonly FlagSpec[]): string[] {
  return table.map((f) => {
    const arg = f.kind === "boolean" ? "" : f.kind === "choice" ? ` ${f.choices!.join("|")}` : ` ${f.arg ?? "VALUE"}`;
    const def = f.default !== undefined && f.kind !== "boolean" ? ` (default ${f.default})` : "";
    const names = f.short ? `-${f.short}, --${f.name}` : `--${f.name}`;
    return `  ${(names + arg).padEnd(28)} ${f.help}${f.multiple ? " (repeatable)" : ""}${def}`;
  });
}

/**
 * Parses arguments against a flag table. Positional arguments are refused.
 *
 * @example
 * ```ts
 * parseFlags([{ name: "port", key: "port", kind: "int", default: 5000, min: 0, max: 65535, help: "" }], ["--port", "0"]);
 * // { port: 0 }
 * ```
 * @param table the flags
 * @param args the command-line arguments
 * @returns the values by key, defaults filled in (absent flags without a default are undefined)
 * @throws {UsageError} for an unknown flag, a missing value or a value out of range
 */
export function parseFlags<K extends string>(table: readonly FlagSpec<K>[], args: string[]): Record<K, unknown> {
  const options: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {};
  for (const f of table) {
    options[f.name] = {
      type: f.kind === "boolean" ? "boolean" : "string",
      ...(f.short ? { short: f.short } : {}),
      ...(f.multiple ? { multiple: true } : {}),
    };
  }
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({ args: joinNegativeValues(table, args), options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError(usageProblem(err as Error));
  }
  const config = {} as Record<K, unknown>;
  for (const f of table) {
    const raw = values[f.name];
    if (raw === undefined) {
      config[f.key] = f.multiple && f.default !== undefined ? [f.default] : f.default;
      continue;
    }
    if (Array.isArray(raw)) {
      if (raw.includes("")) throw new UsageError(`--${f.name} must not be empty`);
      config[f.key] = raw;
      continue;
    }
    if (f.kind === "boolean" || f.kind === "string") {
      if (f.kind === "string" && raw === "") throw new UsageError(`--${f.name} must not be empty`);
      config[f.key] = raw;
      continue;
    }
    const text = String(raw);
    if (f.kind === "choice") {
      if (!f.choices!.includes(text)) throw new UsageError(`--${f.name} must be one of ${f.choices!.join(", ")}`);
      config[f.key] = text;
      continue;
    }
    // Plain decimals only: Number() would also take "0x10", "1e3", " 5" and "+5" without a word.
    const decimal = f.kind === "int" ? /^-?\d+$/ : /^-?(\d+\.?\d*|\.\d+)$/;
    const n = Number(text);
    if (!decimal.test(text) || !Number.isFinite(n)) {
      throw new UsageError(`--${f.name} must be ${f.kind === "int" ? "an integer" : "a number"}, got ${text}`);
    }
    if (n < f.min! || n > f.max!) throw new UsageError(`--${f.name} must be from ${f.min} to ${f.max}, got ${text}`);
    config[f.key] = n;
  }
  return config;
}

/**
 * `--reconnect-for -1` as `--reconnect-for=-1`: parseArgs would take "-1" for a flag and call the value ambiguous,
 * where the user plainly gave a number (which the range check then judges).
 */
function joinNegativeValues(table: readonly FlagSpec[], args: string[]): string[] {
  const numeric = new Set(table.filter((f) => f.kind === "int" || f.kind === "number").map((f) => `--${f.name}`));
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (numeric.has(args[i]) && /^-[\d.]/.test(args[i + 1] ?? "")) {
      out.push(`${args[i]}=${args[i + 1]}`);
      i++;
    } else {
      out.push(args[i]);
    }
  }
  return out;
}

/** parseArgs' message, first line only, with its ambiguous-value case in plain words. */
function usageProblem(err: Error): string {
  const message = err.message.split("\n")[0];
  if (/ambiguous/.test(message)) {
    const flag = /'(-[^' ]+)/.exec(message)?.[1] ?? "the flag";
    return `${flag} needs a value (a value that starts with - is written ${flag}=-VALUE)`;
  }
  return message;
}
