/**
 * Client addresses for per-address limits: the host part of a remote address, the key a host's limits count under
 * (one IPv6 /64 is one client), loopback, and the list of addresses exempt from those limits (--exempt-addresses).
 *
 * @module
 */

/** Raised for an --exempt-addresses entry that is not an address; the message is one line for the user. */
export class AddressListError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "AddressListError";
  }
}

/**
 * The host of a "host:port" or "[v6]:port" remote address, with an IPv4-mapped IPv6 address written as IPv4 and
 * IPv6 in lower case, so that one client has one spelling.
 *
 * @example
 * ```ts
 * hostOf("127.0.0.1:50000"); // "127.0.0.1"
 * hostOf("[::ffff:10.0.0.1]:443"); // "10.0.0.1"
 * ```
 * @param remote the remote address
 * @returns the host
 */
export function hostOf(remote: string): string {
  const host = remote.startsWith("[")
    ? remote.slice(1, remote.lastIndexOf("]"))
    : remote.slice(0, remote.lastIndexOf(":"));
  return normalizeHost(host);
}

function normalizeHost(host: string): string {
  const lower = host.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  return mapped ? mapped[1] : lower;
}

/** Bits of an IPv6 address that one client is assumed to hold: the smallest allocation a home or server gets. */
const CLIENT_PREFIX_BITS = 64;
/** Longest address text looked at (an IPv6 address with a zone id is far shorter); longer text is malformed. */
const MAX_ADDRESS_TEXT = 100;

/**
 * The key a client's per-address limits count under (connections, new nicks, room creations): an IPv4 address as it
 * is, an IPv4-mapped IPv6 address (::ffff:a.b.c.d) as its IPv4 address, and any other IPv6 address as its /64 prefix
 * in canonical form, because one client routinely holds a whole /64 and could otherwise take a fresh budget from each
 * of its 2^64 addresses. Every spelling of one address (compressed or not, any case, an embedded IPv4 tail, a zone id,
 * brackets) gives the same key. Text that is not an IP address is its own key; nothing throws.
 *
 * @example
 * ```ts
 * limitKeyOf("192.0.2.7"); // "192.0.2.7"
 * limitKeyOf("::ffff:192.0.2.7"); // "192.0.2.7"
 * limitKeyOf("2001:DB8:1:2::99%eth0"); // "2001:db8:1:2::/64"
 * ```
 * @param host an address, as {@link hostOf} gives it
 * @returns the key its limits count under
 */
export function limitKeyOf(host: string): string {
  const bytes = parseAddress(host);
  if (bytes === undefined) return host;
  if (bytes.length === 4) return bytes.join(".");
  const prefix = new Uint8Array(16);
  prefix.set(bytes.subarray(0, CLIENT_PREFIX_BITS / 8));
  return `${formatIPv6(prefix)}/${CLIENT_PREFIX_BITS}`;
}

/** One spelling per address (IPv4-mapped as IPv4), or undefined for text that is not an address. */
function canonicalAddress(host: string): string | undefined {
  const bytes = parseAddress(host);
  if (bytes === undefined) return undefined;
  return bytes.length === 4 ? bytes.join(".") : formatIPv6(bytes);
}

/**
 * The bytes of an IP address: 4 for IPv4 and IPv4-mapped IPv6, 16 for other IPv6 (brackets and a zone id dropped).
 * Undefined for anything else, including a network ("/64") and IPv4 with leading zeros (which some read as octal).
 */
function parseAddress(text: string): Uint8Array | undefined {
  if (text.length > MAX_ADDRESS_TEXT) return undefined;
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const ipv4 = parseIPv4(bare);
  if (ipv4 !== undefined) return ipv4;
  const zone = bare.indexOf("%");
  if (zone === 0 || zone === bare.length - 1) return undefined;
  const ipv6 = parseIPv6(zone > 0 ? bare.slice(0, zone) : bare);
  if (ipv6 === undefined) return undefined;
  const mapped = ipv6.subarray(0, 10).every((b) => b === 0) && ipv6[10] === 0xff && ipv6[11] === 0xff;
  return mapped ? ipv6.slice(12) : ipv6;
}

function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)) {
    return undefined;
  }
  return Uint8Array.from(parts, Number);
}

function parseIPv6(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = groupsOf(halves[0], halves.length === 1);
  const tail = halves.length === 2 ? groupsOf(halves[1], true) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => bytes.set([g >> 8, g & 0xff], 2 * i));
  return bytes;
}

/** The 16-bit groups of one side of "::" (an IPv4 tail, where allowed, counts as two); undefined when malformed. */
function groupsOf(text: string, last: boolean): number[] | undefined {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (const [i, part] of parts.entries()) {
    const ipv4 = last && i === parts.length - 1 ? parseIPv4(part) : undefined;
    if (ipv4 !== undefined) groups.push((ipv4[0] << 8) | ipv4[1], (ipv4[2] << 8) | ipv4[3]);
    else if (/^[0-9a-f]{1,4}$/i.test(part)) groups.push(parseInt(part, 16));
    else return undefined;
  }
  return groups;
}

/** RFC 5952 text of 16 address bytes: lower case, no leading zeros, the longest run of two or more zero groups "::". */
function formatIPv6(bytes: Uint8Array): string {
  const groups = Array.from({ length: 8 }, (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1]);
  let best = { at: -1, length: 1 };
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.length) best = { at: i, length: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.at < 0) return hex.join(":");
  return `${hex.slice(0, best.at).join(":")}::${hex.slice(best.at + best.length).join(":")}`;
}

/**
 * Whether a host is a loopback address (127.0.0.0/8 or ::1).
 *
 * @example
 * ```ts
 * isLoopback("127.0.0.2"); // true
 * ```
 * @param host a host from {@link hostOf}
 * @returns true for loopback
 */
export function isLoopback(host: string): boolean {
  return host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The addresses exempt from per-address limits, from the --exempt-addresses value: a comma-separated list of IP
 * addresses and the word `loopback`, or `none`. Each entry exempts one address, in any spelling, and is matched
 * against the connection's own address, not its {@link limitKeyOf} key: exempting one IPv6 address leaves the rest of
 * its /64 limited. A network (CIDR) is not accepted, so that one entry can never exempt more than one machine.
 *
 * @example
 * ```ts
 * const exempt = new ExemptAddresses("loopback,192.0.2.7");
 * exempt.has("127.0.0.1"); // true
 * ```
 */
export class ExemptAddresses {
  #loopback = false;
  #hosts = new Set<string>();

  /**
   * @param spec the flag value
   * @throws {AddressListError} for an entry that is not an IP address, `loopback` or a lone `none`
   */
  constructor(spec: string) {
    const entries = spec.split(",").map((e) => e.trim());
    if (entries.length === 1 && entries[0] === "none") return;
    for (const entry of entries) {
      if (entry === "loopback") {
        this.#loopback = true;
        continue;
      }
      const address = canonicalAddress(entry);
      if (address === undefined) {
        const network = entry.includes("/") && canonicalAddress(entry.slice(0, entry.indexOf("/"))) !== undefined;
        throw new AddressListError(
          `--exempt-addresses: ${JSON.stringify(entry)} is not an IP address, loopback or none` +
            (network ? ` (one address each: a network such as ${entry} cannot be exempted)` : ""),
        );
      }
      this.#hosts.add(address);
    }
  }

  /**
   * Whether a connection's address is exempt.
   *
   * @param host a host from {@link hostOf} (any spelling)
   * @returns true when exempt
   */
  has(host: string): boolean {
    const address = canonicalAddress(host);
    if (address === undefined) return false;
    return (this.#loopback && isLoopback(address)) || this.#hosts.has(address);
  }
}
