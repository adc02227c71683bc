/**
 * Nick and room names: which strings are accepted, and why a refused one was refused.
 *
 * A name is compared and MAC'd exactly as sent, so it must already be in NFC; the server refuses a name that
 * breaks a rule rather than silently changing it.
 *
 * @module
 */

/** Longest nick in UTF-8 bytes. */
export const MAX_NICK_BYTES = 32;
/** Longest room name in UTF-8 bytes. */
export const MAX_ROOM_BYTES = 64;

/** Raised when a nick or room name breaks a rule; the message says which. */
export class NameError extends Error {
  /** @param message the rule that was broken */
  constructor(message: string) {
    super(message);
    this.name = "NameError";
  }
}

// Control, format (invisible), surrogate, private-use and unassigned code points, line/paragraph separators, and the
// characters that draw nothing although they are not of category C: default-ignorable code points (the combining
// grapheme joiner, variation selectors, Hangul fillers, …) and the blank Braille pattern. "alice" followed by any of
// them looks exactly like "alice" but is another name.
const NOT_PRINTABLE = /[\p{C}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\u2800]/u;
const WHITESPACE = /[\p{White_Space}]/u;
// A combining mark at the start draws on whatever is printed before the name.
const LEADING_MARK = /^\p{M}/u;

/**
 * Returns the UTF-8 byte length of a string.
 *
 * @example
 * ```ts
 * utf8Length("é"); // 2
 * ```
 * @param text any string
 * @returns its length in UTF-8 bytes
 */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3; // includes a lone surrogate, which TextEncoder writes as U+FFFD (3 bytes)
  }
  return bytes;
}

/**
 * Checks that a string is well-formed Unicode in NFC and between 1 and `max` UTF-8 bytes long. These are the
 * rules the envelope format itself imposes on `room` and `from`.
 *
 * @example
 * ```ts
 * checkNameBytes("alice", { what: "nick", max: 32 }); // ok
 * checkNameBytes("e\u0301", { what: "nick", max: 32 }); // throws NameError: not NFC
 * ```
 * @param name the candidate
 * @param options.what "nick" or "room name", used in the message
 * @param options.max the largest allowed UTF-8 length
 * @throws {NameError} when a rule is broken
 */
export function checkNameBytes(
  name: unknown,
  options: { what: string; max: number },
): asserts name is string {
  const { what, max } = options;
  if (typeof name !== "string") throw new NameError(`${what} must be a string`);
  if (name.length === 0) throw new NameError(`${what} must not be empty`);
  if (!name.isWellFormed()) throw new NameError(`${what} is not well-formed Unicode`);
  const bytes = utf8Length(name);
  if (bytes > max) throw new NameError(`${what} is ${bytes} bytes; the limit is ${max}`);
  if (name.normalize("NFC") !== name) throw new NameError(`${what} is not NFC-normalized`);
}

/**
 * Validates a nick: 1–32 bytes of NFC UTF-8, printable and visible, no whitespace, not starting with a combining
 * mark, and letters of one script or of one of the combinations {@link checkSingleScript} allows.
 *
 * @example
 * ```ts
 * validateNick("alice"); // "alice"
 * validateNick("al ice"); // throws NameError
 * ```
 * @param nick the candidate
 * @returns the nick, unchanged
 * @throws {NameError} naming the broken rule
 */
export function validateNick(nick: unknown): string {
  checkNameBytes(nick, { what: "nick", max: MAX_NICK_BYTES });
  if (NOT_PRINTABLE.test(nick)) throw new NameError("nick contains a control or invisible character");
  if (WHITESPACE.test(nick)) throw new NameError("nick must not contain whitespace");
  if (LEADING_MARK.test(nick)) throw new NameError("nick must not start with a combining mark");
  checkSingleScript(nick);
  return nick;
}

/**
 * Whether a nick could be registered ({@link validateNick} accepts it): a server admits no other, so a client takes a
 * name that fails as not authentic (one that differs from a real nick only by what draws nothing would otherwise be
 * shown as that nick at first sight).
 *
 * @example
 * ```ts
 * isRegistrableNick("alice"); // true
 * isRegistrableNick("alice\u200b"); // false
 * ```
 * @param nick the candidate
 * @returns true when validateNick accepts it
 */
export function isRegistrableNick(nick: unknown): boolean {
  try {
    validateNick(nick);
    return true;
  } catch {
    return false;
  }
}

/**
 * Validates a room name: 1–64 bytes of NFC UTF-8, printable and visible, no whitespace (so `/join ROOM` is
 * unambiguous), not starting with a combining mark.
 *
 * @example
 * ```ts
 * validateRoom("general"); // "general"
 * ```
 * @param room the candidate
 * @returns the room name, unchanged
 * @throws {NameError} naming the broken rule
 */
export function validateRoom(room: unknown): string {
  checkNameBytes(room, { what: "room name", max: MAX_ROOM_BYTES });
  if (NOT_PRINTABLE.test(room)) {
    throw new NameError("room name contains a control or invisible character");
  }
  if (WHITESPACE.test(room)) throw new NameError("room name must not contain whitespace");
  if (LEADING_MARK.test(room)) throw new NameError("room name must not start with a combining mark");
  return room;
}

/**
 * Lookalikes folded onto the Latin letter they imitate, applied after NFKC and lower-casing (so the table holds
 * lower-case forms; a Cyrillic or Greek capital that looks Latin lower-cases to an entry here: В -> в -> b). Digits
 * 0 and 1 fold onto o and l. PROTOCOL.md lists the same table.
 */
export const LOOKALIKES: Readonly<Record<string, string>> = {
  // Cyrillic (lower case, including the lower case of capitals that look Latin: В -> в, Н -> н)
  "а": "a",
  "в": "b",
  "г": "r",
  "е": "e",
  "к": "k",
  "м": "m",
  "н": "h",
  "о": "o",
  "р": "p",
  "с": "c",
  "т": "t",
  "у": "y",
  "х": "x",
  "ѕ": "s",
  "і": "i",
  "ј": "j",
  "һ": "h",
  "ԁ": "d",
  "ԛ": "q",
  "ԝ": "w",
  "ӏ": "l",
  "ү": "y",
  // Greek (likewise: Η -> η -> h, Ν -> ν -> n)
  "α": "a",
  "β": "b",
  "ε": "e",
  "ζ": "z",
  "η": "h",
  "ι": "i",
  "κ": "k",
  "μ": "m",
  "ν": "n",
  "ο": "o",
  "ρ": "p",
  "τ": "t",
  "υ": "y",
  "χ": "x",
  "ϲ": "c",
  "ϳ": "j",
  // Not a lookalike but case folding: toLowerCase() makes a final capital Σ a final ς, and a σ typed in lower case
  // stays σ, so without this "ΑΣ" and "ασ" would be two names.
  "ς": "σ",
  // Latin letters that imitate other Latin letters, and digits
  "ı": "i",
  "ȷ": "j",
  "ɑ": "a",
  "ɡ": "g",
  "ɩ": "i",
  "0": "o",
  "1": "l",
};

/**
 * The comparison key of a nick or room name: NFKC, then `toLowerCase()`, then every character of
 * {@link LOOKALIKES} replaced by the Latin letter it imitates. Two names with the same key are the same name to
 * the server: `Alice`, `ALICE`, `аlice` (Cyrillic а) and `a1ice` all fold to `alice`.
 *
 * @example
 * ```ts
 * foldName("Аlice") === foldName("alice"); // true (Cyrillic А)
 * ```
 * @param name a nick or room name (any string)
 * @returns its comparison key
 */
export function foldName(name: string): string {
  let out = "";
  for (const ch of name.normalize("NFKC").toLowerCase()) out += LOOKALIKES[ch] ?? ch;
  return out;
}

/**
 * The key under which nicks are compared for uniqueness: {@link foldName}.
 *
 * @example
 * ```ts
 * nickKey("Alice") === nickKey("ALICE"); // true
 * ```
 * @param nick a valid nick
 * @returns its comparison key
 */
export function nickKey(nick: string): string {
  return foldName(nick);
}

/** Every script of the Unicode Script property except Common and Inherited (which any name may use). */
const SCRIPT_NAMES = (
  "Adlam Ahom Anatolian_Hieroglyphs Arabic Armenian Avestan Balinese Bamum Bassa_Vah Batak Bengali Bhaiksuki " +
  "Bopomofo Brahmi Braille Buginese Buhid Canadian_Aboriginal Carian Caucasian_Albanian Chakma Cham Cherokee " +
  "Chorasmian Coptic Cuneiform Cypriot Cypro_Minoan Cyrillic Deseret Devanagari Dives_Akuru Dogra Duployan " +
  "Egyptian_Hieroglyphs Elbasan Elymaic Ethiopic Garay Georgian Glagolitic Gothic Grantha Greek Gujarati " +
  "Gunjala_Gondi Gurmukhi Gurung_Khema Han Hangul Hanifi_Rohingya Hanunoo Hatran Hebrew Hiragana " +
  "Imperial_Aramaic Inscriptional_Pahlavi Inscriptional_Parthian Javanese Kaithi Kannada Katakana Kawi Kayah_Li " +
  "Kharoshthi Khitan_Small_Script Khmer Khojki Khudawadi Kirat_Rai Lao Latin Lepcha Limbu Linear_A Linear_B Lisu " +
  "Lycian Lydian Mahajani Makasar Malayalam Mandaic Manichaean Marchen Masaram_Gondi Medefaidrin Meetei_Mayek " +
  "Mende_Kikakui Meroitic_Cursive Meroitic_Hieroglyphs Miao Modi Mongolian Mro Multani Myanmar Nabataean " +
  "Nag_Mundari Nandinagari New_Tai_Lue Newa Nko Nushu Nyiakeng_Puachue_Hmong Ogham Ol_Chiki Ol_Onal " +
  "Old_Hungarian Old_Italic Old_North_Arabian Old_Permic Old_Persian Old_Sogdian Old_South_Arabian Old_Turkic " +
  "Old_Uyghur Oriya Osage Osmanya Pahawh_Hmong Palmyrene Pau_Cin_Hau Phags_Pa Phoenician Psalter_Pahlavi Rejang " +
  "Runic Samaritan Saurashtra Sharada Shavian Siddham SignWriting Sinhala Sogdian Sora_Sompeng Soyombo Sundanese " +
  "Sunuwar Syloti_Nagri Syriac Tagalog Tagbanwa Tai_Le Tai_Tham Tai_Viet Takri Tamil Tangsa Tangut Telugu Thaana " +
  "Thai Tibetan Tifinagh Tirhuta Todhri Toto Tulu_Tigalari Ugaritic Vai Vithkuqi Wancho Warang_Citi Yezidi Yi " +
  "Zanabazar_Square"
).split(" ");
/** Latin first, so that messages name it first ("nick mixes Latin and Cyrillic letters"). */
const SCRIPTS: [string, RegExp][] = ["Latin", ...SCRIPT_NAMES.filter((n) => n !== "Latin")].flatMap((name) => {
  try {
    return [[name.replaceAll("_", " "), new RegExp(`\\p{Script=${name}}`, "u")] as [string, RegExp]];
  } catch {
    return []; // a script this runtime does not know yet: its letters count as "another script" below
  }
});
const NEUTRAL_SCRIPT = /[\p{Script=Common}\p{Script=Inherited}]/u;
/** The mixes of scripts UTS #39 calls "highly restrictive": how Japanese, Chinese and Korean are written, with Latin. */
const SCRIPT_MIXES = [
  ["Latin", "Han", "Hiragana", "Katakana"],
  ["Latin", "Han", "Bopomofo"],
  ["Latin", "Han", "Hangul"],
];

function scriptOf(ch: string): string {
  return SCRIPTS.find(([, re]) => re.test(ch))?.[0] ?? "another script's";
}

/**
 * Refuses a nick whose letters come from more than one script, such as `pаypal` with a Cyrillic а or `Ᏼob` with a
 * Cherokee Ᏼ: the rule UTS #39 calls "highly restrictive". Characters of the Common and Inherited scripts (digits,
 * punctuation, symbols, combining marks) go with any script, and Latin may be mixed with the scripts of Japanese
 * (Han, Hiragana, Katakana), Chinese (Han, Bopomofo) and Korean (Han, Hangul): `東京_alice` is fine.
 *
 * @example
 * ```ts
 * checkSingleScript("alice"); // ok
 * checkSingleScript("аlice"); // throws NameError (Cyrillic а among Latin letters)
 * ```
 * @param nick the candidate
 * @throws {NameError} naming the scripts mixed
 */
export function checkSingleScript(nick: string): void {
  const found = new Set<string>();
  for (const ch of nick) {
    if (ch < "\u0080") {
      if (/[A-Za-z]/.test(ch)) found.add("Latin");
    } else if (!NEUTRAL_SCRIPT.test(ch)) found.add(scriptOf(ch));
  }
  if (found.size <= 1 || SCRIPT_MIXES.some((mix) => [...found].every((s) => mix.includes(s)))) return;
  const order = SCRIPTS.map(([name]) => name);
  const names = [...found].sort((a, b) => (order.indexOf(a) >>> 0) - (order.indexOf(b) >>> 0));
  throw new NameError(`nick mixes ${names.join(" and ")} letters`);
}
