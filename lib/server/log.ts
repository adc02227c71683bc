/**
 * The server's event log: one line per event on a sink (stderr in server.ts), as text or JSON, filtered by level.
 * Callers pass only metadata (time, remote address, nick, room, codes); envelope contents are never logged.
 *
 * @module
 */

/** Log levels, most severe first. */
export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];
/** Output format. */
export type LogFormat = "text" | "json";

/** Fields of one event; values are short metadata only. */
export type LogFields = Record<string, string | number | boolean | undefined>;

/**
 * Writes one line per event.
 *
 * @example
 * ```ts
 * const log = new Logger({ level: "info", format: "text", sink: (line) => console.error(line) });
 * log.info("connect", { remote: "127.0.0.1:50000" });
 * ```
 */
export class Logger {
  #rank: number;
  #format: LogFormat;
  #sink: (line: string) => void;

  /**
   * @param options.level the least severe level written (default "info")
   * @param options.format "text" or "json" (default "text")
   * @param options.sink where each line goes (default: nowhere)
   */
  constructor(options: { level?: LogLevel; format?: LogFormat; sink?: (line: string) => void } = {}) {
    this.#rank = LOG_LEVELS.indexOf(options.level ?? "info");
    this.#format = options.format ?? "text";
    this.#sink = options.sink ?? (() => {});
  }

  /** Whether events of this level are written. */
  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) <= this.#rank;
  }

  /** Logs an error event. */
  error(event: string, fields: LogFields = {}): void {
    this.#write("error", event, fields);
  }

  /** Logs a warning event (a limit hit, a refused client). */
  warn(event: string, fields: LogFields = {}): void {
    this.#write("warn", event, fields);
  }

  /** Logs an ordinary event (connect, join, leave). */
  info(event: string, fields: LogFields = {}): void {
    this.#write("info", event, fields);
  }

  /** Logs a detail event. */
  debug(event: string, fields: LogFields = {}): void {
    this.#write("debug", event, fields);
  }

  #write(level: LogLevel, event: string, fields: LogFields): void {
    if (!this.enabled(level)) return;
    const time = new Date().toISOString();
    if (this.#format === "json") {
      this.#sink(escapeUnsafe(JSON.stringify({ time, level, event, ...fields })));
      return;
    }
    let line = `${time} ${level.toUpperCase().padEnd(5)} ${event}`;
    for (const [key, value] of Object.entries(fields)) {
      if (value === undefined) continue;
      const text = String(value);
      line += ` ${key}=${PLAIN_VALUE.test(text) ? text : quoteValue(text)}`;
    }
    this.#sink(line);
  }
}

/** A value written as it is: no space, quote, equals sign, control, format (bidi) or separator character. */
const PLAIN_VALUE = /^[^\s"=\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+$/u;
/** What JSON.stringify leaves as it is but a terminal or a log reader may act on. */
const UNSAFE_IN_QUOTES = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

/** A value in double quotes, JSON-escaped, with every control, format and separator character as \uXXXX. */
function quoteValue(text: string): string {
  return escapeUnsafe(JSON.stringify(text));
}

/** JSON text with the characters JSON.stringify leaves raw (DEL, C1, bidi and other format, separators) as \uXXXX. */
function escapeUnsafe(json: string): string {
  return json.replace(UNSAFE_IN_QUOTES, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
