// Validate one glTF/GLB file with the Khronos glTF Validator and print its JSON report on stdout.
// Usage: node gltf_validate.mjs <node_modules folder holding gltf-validator> <file.glb>
// The validator package is provisioned at test time by tests/gltf_validator.py (not vendored).
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

const [modulesDir, file] = process.argv.slice(2);
if (!modulesDir || !file) {
  console.error("usage: node gltf_validate.mjs <node_modules dir> <file.glb>");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(modulesDir), "noop.js"));
const validator = require("gltf-validator");
const data = await readFile(file);
try {
  const report = await validator.validateBytes(new Uint8Array(data), {
    uri: path.basename(file),
    maxIssues: 0, // no limit
    // External files (a .gltf's .bin or images) are resolved beside the file.
    externalResourceFunction: (uri) =>
      readFile(path.resolve(path.dirname(file), decodeURIComponent(uri))).then((b) => new Uint8Array(b)),
  });
  report.validatorVersion = validator.version();
  process.stdout.write(JSON.stringify(report));
} catch (err) {
  // Rejection: the input could not be recognised as glTF/GLB at all.
  console.error(String(err));
  process.exit(1);
}
