/**
 * Client addresses for per-address limits: the host part of a remote address, loopback, and the list of addresses
 * exempt from those limits (--exempt-addresses).
 *
 * @module
 */

import { isIP } from "node:net";

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
 * addresses and the word `loopback`, or `none`.
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
      if (entry === "loopback") this.#loopback = true;
      else if (isIP(entry) === 4) this.#hosts.add(entry);
      // The canonical spelling the runtime reports (::0001 is ::1).
      else if (isIP(entry) === 6) this.#hosts.add(normalizeHost(new URL(`http://[${entry}]/`).hostname.slice(1, -1)));
      else {throw new AddressListError(
          `--exempt-addresses: ${JSON.stringify(entry)} is not an IP address, loopback or none`,
        );}
    }
  }

  /**
   * Whether a host is exempt.
   *
   * @param host a host from {@link hostOf}
   * @returns true when exempt
   */
  has(host: string): boolean {
    return (this.#loopback && isLoopback(host)) || this.#hosts.has(host);
  }
}
