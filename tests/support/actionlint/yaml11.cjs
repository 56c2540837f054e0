// Read YAML as the `yaml` npm package does in YAML 1.1 mode, for tagpin's differential tests
// (tests/support/yaml11.py drives it). stdin: one JSON string (a YAML stream) per line; stdout:
// one JSON object per line, {"docs": [...]} or {"error": "..."}. What JSON cannot say is written
// as the Go reader writes it: {"!float": "NaN" | "+Inf" | "-Inf"}, {"!timestamp": ISO text},
// {"!binary": ...}, and integers exactly as {"!int": "digits"}.
const readline = require("node:readline");
const YAML = require("yaml");

function marked(value) {
  if (typeof value === "bigint") return { "!int": value.toString() };
  if (typeof value === "number" && !Number.isFinite(value)) {
    return { "!float": Number.isNaN(value) ? "NaN" : value > 0 ? "+Inf" : "-Inf" };
  }
  if (value instanceof Date) return { "!timestamp": value.toISOString() };
  if (value instanceof Uint8Array) return { "!binary": Buffer.from(value).toString("latin1") };
  if (Array.isArray(value)) return value.map(marked);
  if (value instanceof Map || value instanceof Set) return { "!map": String(value) };
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, marked(v)]));
  }
  return value;
}

function read(text) {
  const docs = YAML.parseAllDocuments(text, { version: "1.1", intAsBigInt: true });
  const failed = docs.find((doc) => doc.errors && doc.errors.length);
  if (failed) return { error: failed.errors[0].message };
  return { docs: docs.map((doc) => marked(doc.toJS({ maxAliasCount: -1 }))) };
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  let answer;
  try {
    answer = read(JSON.parse(line));
  } catch (error) {
    answer = { error: String(error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
});
