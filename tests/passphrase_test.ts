import assert from "node:assert/strict";
import {
  generatePassphrase,
  isWeakPassphrase,
  PassphraseError,
  presetPassphrase,
  WEAK_PASSPHRASE_CHARS,
} from "../lib/client/passphrase.ts";

Deno.test("isWeakPassphrase counts characters, not bytes, after NFC", () => {
  assert.equal(WEAK_PASSPHRASE_CHARS, 12);
  assert.ok(isWeakPassphrase("elevenchars"));
  assert.ok(!isWeakPassphrase("twelve chars"));
  assert.ok(isWeakPassphrase("ééééééééééé"), "11 two-byte characters are still 11");
  assert.ok(isWeakPassphrase("e\u0301".repeat(11)), "11 decomposed é are 11 after NFC, not 22");
  assert.ok(!isWeakPassphrase("🔑".repeat(12)));
});

Deno.test("generatePassphrase gives 24 base32 characters in six groups, different every time", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const p = generatePassphrase();
    assert.match(p, /^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){5}$/);
    assert.ok(!isWeakPassphrase(p));
    seen.add(p);
  }
  assert.equal(seen.size, 200);
});

Deno.test("presetPassphrase: an explicit --passphrase-file wins over the environment, and must be readable", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/p`;
    await Deno.writeTextFile(file, "from file\r\nsecond\n", { mode: 0o600 });
    assert.equal(await presetPassphrase({ env: "from env", file }), "from file");
    assert.equal(await presetPassphrase({ env: "", file }), "from file");
    assert.equal(await presetPassphrase({ env: "from env" }), "from env");
    assert.equal(await presetPassphrase({ env: "" }), undefined);
    assert.equal(await presetPassphrase({}), undefined);
    // A missing file is an error even when the environment has a passphrase.
    await assert.rejects(presetPassphrase({ env: "from env", file: `${dir}/missing` }), PassphraseError);
    await assert.rejects(presetPassphrase({ file: `${dir}/missing` }), /no such file/);
    await Deno.writeTextFile(file, "\nsecond\n");
    await assert.rejects(presetPassphrase({ file }), /first line is empty/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "presetPassphrase warns about a passphrase file that other users can read, and not about a private one",
  ignore: Deno.build.os === "windows",
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const file = `${dir}/p`;
      await Deno.writeTextFile(file, "secret words here\n");
      const warnings: string[] = [];
      for (const mode of [0o600, 0o400, 0o640, 0o604, 0o644]) {
        await Deno.chmod(file, mode);
        await presetPassphrase({ file, warn: (line) => warnings.push(line) });
      }
      assert.equal(warnings.length, 3, warnings.join("\n"));
      assert.match(warnings[0], /can be read by other users \(mode 640\); chmod 600 it/);
      if (Deno.uid() !== 0) {
        await Deno.chmod(file, 0o000);
        await assert.rejects(presetPassphrase({ file }), /cannot read --passphrase-file .*permission denied/);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("--passphrase-file: a CR before the first LF is dropped, any other CR and all spaces are kept (README)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-pass-" });
  try {
    const cases: [string, string][] = [
      ["secret\r\nsecond line\r\n", "secret"],
      ["secret\n", "secret"],
      ["secret", "secret"],
      ["secret\r", "secret\r"],
      ["sec\rret\n", "sec\rret"],
      [" secret \n", " secret "],
    ];
    for (const [text, passphrase] of cases) {
      await Deno.writeTextFile(`${dir}/p`, text);
      assert.equal(await presetPassphrase({ file: `${dir}/p` }), passphrase, JSON.stringify(text));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
