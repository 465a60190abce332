/**
 * Canonical JSON as the Python SDK writes it (`json.dumps(sort_keys=True, separators=(",",
 * ":"), ensure_ascii=True)`), and a strict check that bytes are exactly that.
 *
 * A package manifest is signed as bytes and must be canonical, so the verifier re-serialises
 * the parsed manifest and compares. `JSON.parse` cannot be used for that: it forgets how a
 * number was written (`1.0` becomes `1`) and silently keeps the last of duplicate keys. This
 * small parser keeps each number's text, refuses duplicate keys, NaN and Infinity, and the
 * serialiser prints numbers the way Python's `repr` does.
 */

class RawNumber {
  constructor(readonly text: string) {}
}
type Raw = null | boolean | string | RawNumber | Raw[] | { [key: string]: Raw };

class Parser {
  private i = 0;
  constructor(private readonly s: string) {}

  parse(): Raw {
    const value = this.value(0);
    this.ws();
    if (this.i !== this.s.length) throw new SyntaxError(`extra data at ${this.i}`);
    return value;
  }

  private ws(): void {
    while (" \t\n\r".includes(this.s[this.i] ?? "x")) this.i++;
  }

  private value(depth: number): Raw {
    if (depth > 512) throw new SyntaxError("nested too deeply");
    this.ws();
    const ch = this.s[this.i];
    if (ch === "{") return this.object(depth);
    if (ch === "[") return this.array(depth);
    if (ch === '"') return this.string();
    for (const [word, v] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.s.slice(this.i, this.i + 400));
    if (m === null) throw new SyntaxError(`unexpected character at ${this.i}`);
    this.i += m[0].length;
    return new RawNumber(m[0]);
  }

  private object(depth: number): Raw {
    const out: { [key: string]: Raw } = Object.create(null);
    this.i++;
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') throw new SyntaxError(`expected a key at ${this.i}`);
      const key = this.string();
      if (Object.hasOwn(out, key)) throw new SyntaxError(`duplicate key ${JSON.stringify(key)}`);
      this.ws();
      if (this.s[this.i++] !== ":") throw new SyntaxError(`expected ':' at ${this.i - 1}`);
      out[key] = this.value(depth + 1);
      this.ws();
      const sep = this.s[this.i++];
      if (sep === "}") return out;
      if (sep !== ",") throw new SyntaxError(`expected ',' or '}' at ${this.i - 1}`);
    }
  }

  private array(depth: number): Raw {
    const out: Raw[] = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      this.ws();
      const sep = this.s[this.i++];
      if (sep === "]") return out;
      if (sep !== ",") throw new SyntaxError(`expected ',' or ']' at ${this.i - 1}`);
    }
  }

  private string(): string {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: JSON forbids raw control characters in strings
    const m = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(this.s.slice(this.i));
    if (m === null) throw new SyntaxError(`bad string at ${this.i}`);
    this.i += m[0].length;
    return JSON.parse(m[0]) as string;
  }
}

/** Python's `repr(float)`: shortest round-trip digits, an exponent outside [1e-4, 1e16). */
export function pythonFloat(x: number): string {
  if (!Number.isFinite(x)) throw new RangeError("not a finite number");
  if (Object.is(x, -0)) return "-0.0";
  const [mantissa = "0", expText = "0"] = x.toExponential().split("e");
  const exp = Number(expText);
  const negative = mantissa.startsWith("-");
  const digits = mantissa.replace("-", "").replace(".", "");
  let body: string;
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      const whole = digits.padEnd(exp + 1, "0");
      const intPart = whole.slice(0, exp + 1);
      const frac = whole.slice(exp + 1) || "0";
      body = `${intPart}.${frac}`;
    } else {
      body = `0.${"0".repeat(-exp - 1)}${digits}`;
    }
  } else {
    const frac = digits.slice(1);
    const e = `${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
    body = `${digits[0]}${frac ? `.${frac}` : ""}e${e}`;
  }
  return (negative ? "-" : "") + body;
}

function numberText(n: RawNumber): string {
  if (/^-?(0|[1-9]\d*)$/.test(n.text)) return n.text;
  return pythonFloat(Number(n.text));
}

function escapeString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ch = s[i] as string;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c < 0x20 || c > 0x7e) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

function serialise(value: Raw | unknown): string {
  if (value === null) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (value instanceof RawNumber) return numberText(value);
  if (typeof value === "number") {
    return Number.isInteger(value) && Math.abs(value) < 2 ** 53 ? String(value) : pythonFloat(value);
  }
  if (typeof value === "string") return escapeString(value);
  if (Array.isArray(value)) return `[${value.map(serialise).join(",")}]`;
  if (typeof value === "object") {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).sort();
    return `{${keys.map((k) => `${escapeString(k)}:${serialise(obj[k])}`).join(",")}}`;
  }
  throw new TypeError(`cannot serialise a ${typeof value}`);
}

/** Canonical JSON text of plain data (integers stay integers: `1`, floats as Python: `1.5`). */
export function canonicalJson(value: unknown): string {
  return serialise(value);
}

/** The canonical form of JSON text, numbers kept as written then spelled as Python does. */
export function canonicalize(text: string): string {
  return serialise(new Parser(text).parse());
}

/**
 * Parse strict JSON text; returns the plain value and whether the text is canonical.
 *
 * @throws SyntaxError on invalid JSON, duplicate keys, NaN/Infinity or too deep nesting.
 */
export function parseStrict(text: string): { value: unknown; canonical: boolean } {
  const raw = new Parser(text).parse();
  return { value: JSON.parse(text) as unknown, canonical: serialise(raw) === text };
}
