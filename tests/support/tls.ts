/**
 * Self-signed TLS certificates for the end-to-end tests, made with the openssl command line tool (.ci/run installs it
 * when missing).
 *
 * @module
 */

import assert from "node:assert/strict";

/** Whether an `openssl` command is available; TLS tests are ignored without it. */
export const hasOpenssl: boolean = await new Deno.Command("openssl", {
  args: ["version"],
  stdout: "null",
  stderr: "null",
}).output().then((o) => o.success, () => false);

/**
 * Makes a P-256 certificate for localhost and 127.0.0.1, valid for two days, that a server can present and a client
 * can trust with --ca. It is not marked as a CA: rustls refuses a server certificate that is.
 *
 * @param dir where to write the files
 * @param name prefix of the file names
 * @param options.dns the one DNS name to make it for instead (with no IP address), to test a name mismatch
 * @returns the paths of the certificate and the private key (PEM)
 */
export async function selfSigned(
  dir: string,
  name = "tls",
  options: { dns?: string } = {},
): Promise<{ cert: string; key: string }> {
  const cert = `${dir}/${name}-cert.pem`;
  const key = `${dir}/${name}-key.pem`;
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "2",
      "-subj",
      `/CN=${options.dns ?? "localhost"}`,
      "-addext",
      options.dns ? `subjectAltName=DNS:${options.dns}` : "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(out.success, `openssl failed: ${new TextDecoder().decode(out.stderr)}`);
  return { cert, key };
}
