// Builds a JavaScript executor into a component with componentize-js:
//   node sdk/js/build.mjs <source.js> <out.wasm>
// The source may import relative modules (the SDK beside this script among them); the
// WIT is the project's world.
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile, rename } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { dirname, resolve, sep } from "node:path";

const [source, out] = process.argv.slice(2);
if (!source || !out) {
  console.error("usage: node build.mjs <source.js> <out.wasm>");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const sourcePath = resolve(source);
const outPath = resolve(out);
// componentize-js lets the source import modules from the working directory's tree
// (when the source lies in it) or else only from the source's own directory: work from
// the deepest directory that holds both the source and this SDK, so that the source can
// import the SDK wherever the two are.
process.chdir(commonAncestor(dirname(sourcePath), here));
const { component } = await componentize({
  sourcePath,
  witPath: resolve(here, "../../wit"),
  worldName: "executor",
  // The sandbox grants no network; keep the component to the executor world and the
  // WASI it needs for stdio, clocks and random numbers.
  disableFeatures: ["http", "fetch-event"],
});
/** The deepest directory that holds both `a` and `b` (absolute paths). */
function commonAncestor(a, b) {
  const [x, y] = [a.split(sep), b.split(sep)];
  let n = 0;
  while (n < x.length && n < y.length && x[n] === y[n]) n++;
  return x.slice(0, n).join(sep) || sep;
}

// Write then rename, so that a reader never sees half a component.
await writeFile(`${outPath}.tmp`, component);
await rename(`${outPath}.tmp`, outPath);
