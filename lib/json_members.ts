/**
 * Finds a repeated member name in JSON text. `JSON.parse` silently keeps the last of two members with the same
 * name, so a message could mean one thing to this server and another to a parser that keeps the first; the
 * protocol refuses such text instead. This runs on every client frame, so it scans with `indexOf` over strings
 * rather than character by character.
 *
 * @module
 */

/** Objects with more members than this get a Set for the lookups (an attacker can send thousands of members). */
const LINEAR_MEMBERS = 8;

/** The member names seen so far in one open object. */
class Members {
  #list: string[] = [];
  #set: Set<string> | undefined;

  /** Adds a name; returns false when it was already there. */
  add(name: string): boolean {
    if (this.#set !== undefined) {
      if (this.#set.has(name)) return false;
      this.#set.add(name);
      return true;
    }
    if (this.#list.includes(name)) return false;
    this.#list.push(name);
    if (this.#list.length > LINEAR_MEMBERS) this.#set = new Set(this.#list);
    return true;
  }
}

/** The index of the quote that closes the string opened at `open`. */
function closingQuote(text: string, open: number): number {
  let end = text.indexOf('"', open + 1);
  while (end > 0) {
    let backslashes = 0;
    while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return end;
    end = text.indexOf('"', end + 1);
  }
  return text.length;
}

/** How many member names the text holds, in all its objects (no name is extracted, so nothing is allocated). */
function countNames(text: string): number {
  // Whether each open container is an object; the top level counts as an array.
  const inObject: boolean[] = [];
  let object = false;
  let expectName = false;
  let names = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    switch (text.charCodeAt(i)) {
      case 0x22: // "
        if (expectName) {
          names++;
          expectName = false;
        }
        i = closingQuote(text, i);
        break;
      case 0x7b: // {
        inObject.push(object);
        object = expectName = true;
        break;
      case 0x5b: // [
        inObject.push(object);
        object = expectName = false;
        break;
      case 0x7d: // }
      case 0x5d: // ]
        object = inObject.pop()!;
        expectName = false;
        break;
      case 0x2c: // ,
        expectName = object;
        break;
    }
  }
  return names;
}

/** How many members the objects of a parsed value hold in all (JSON.parse keeps one of two equal names). */
function countMembers(value: unknown): number {
  let members = 0;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const v = pending.pop();
    if (typeof v !== "object" || v === null) continue;
    if (Array.isArray(v)) {
      for (const item of v) if (typeof item === "object" && item !== null) pending.push(item);
      continue;
    }
    for (const key in v) {
      members++;
      const item = (v as Record<string, unknown>)[key];
      if (typeof item === "object" && item !== null) pending.push(item);
    }
  }
  return members;
}

/**
 * Returns the first member name that appears twice in one object of a JSON text, or undefined when there is none.
 * Names are compared after unescaping, as `JSON.parse` compares them (`"tag"` and `"\u0074ag"` are the same name).
 * The text must already be valid JSON (parse it first); for other text the answer is unspecified.
 *
 * Given the parsed value too, it first compares the number of names in the text with the number of members the
 * parse kept, which allocates nothing; only when they differ does it look for the name.
 *
 * @example
 * ```ts
 * findDuplicateMember('{"type":"ping","data":"a","data":"b"}'); // "data"
 * findDuplicateMember('{"a":{"b":1},"c":{"b":2}}'); // undefined: the two b are in different objects
 * const text = '{"type":"who"}';
 * findDuplicateMember(text, { parsed: JSON.parse(text) }); // undefined
 * ```
 * @param text valid JSON text
 * @param options.parsed `JSON.parse(text)`, for the fast check
 * @returns the repeated name, or undefined
 */
export function findDuplicateMember(text: string, options: { parsed?: unknown } = {}): string | undefined {
  if ("parsed" in options && countNames(text) === countMembers(options.parsed)) return undefined;
  // One entry per open object or array (undefined for an array, and for the top level).
  const open: (Members | undefined)[] = [];
  let members: Members | undefined;
  let expectName = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    switch (text.charCodeAt(i)) {
      case 0x22: { // "
        const end = closingQuote(text, i);
        if (expectName) {
          const raw = text.slice(i + 1, end);
          const name = raw.includes("\\") ? JSON.parse(text.slice(i, end + 1)) as string : raw;
          if (!members!.add(name)) return name;
          expectName = false;
        }
        i = end;
        break;
      }
      case 0x7b: // {
        open.push(members);
        members = new Members();
        expectName = true;
        break;
      case 0x5b: // [
        open.push(members);
        members = undefined;
        expectName = false;
        break;
      case 0x7d: // }
      case 0x5d: // ]
        members = open.pop();
        expectName = false;
        break;
      case 0x2c: // ,
        expectName = members !== undefined;
        break;
    }
  }
  return undefined;
}
