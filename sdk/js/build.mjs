#!/usr/bin/env node
// Builds a JavaScript executor into a component with componentize-js:
//   npx superstep-guest-build <source.js> <out.wasm>      (from a project that depends on
//   node node_modules/superstep-guest/build.mjs ...         the superstep-guest package)
// The source imports the SDK by its name, `superstep-guest`, and may import modules of
// its own directory by relative paths. componentize-js resolves neither package names
// nor paths outside the tree it works in, so the source's directory is staged in a
// temporary one with the SDK beside it, imports of the SDK pointed there. The WIT is the
// one this package carries. (The package depends on preview2-shim because
// componentize-js imports it without declaring it.)
import { componentize } from "@bytecodealliance/componentize-js";
import { cp, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { dirname, join, relative, resolve, sep } from "node:path";

const SDK = "superstep-guest";
const [source, out] = process.argv.slice(2);
if (!source || !out) {
  console.error("usage: superstep-guest-build <source.js> <out.wasm>");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const sourcePath = resolve(source);
const outPath = resolve(out);
const stage = await mkdtemp(join(tmpdir(), "superstep-js-"));
try {
  await cp(join(here, `${SDK}.js`), join(stage, `${SDK}.js`));
  await stageTree(dirname(sourcePath), join(stage, "src"), stage);
  process.chdir(stage);
  const { component } = await componentize({
    sourcePath: join(stage, "src", relative(dirname(sourcePath), sourcePath)),
    witPath: join(here, "wit"),
    worldName: "executor",
    // The sandbox grants no network; keep the component to the executor world and the
    // WASI it needs for stdio, clocks and random numbers.
    disableFeatures: ["http", "fetch-event"],
  });
  // Write then rename, so that a reader never sees half a component.
  await writeFile(`${outPath}.tmp`, component);
  await rename(`${outPath}.tmp`, outPath);
} finally {
  await rm(stage, { recursive: true, force: true });
}

/**
 * Copies the JavaScript modules under `from` to `to` (node_modules and hidden
 * directories left out), each import of the SDK by name pointed at the SDK in `root`.
 */
async function stageTree(from, to, root) {
  for (const entry of await readdir(from, { withFileTypes: true })) {
    if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
    const [source, target] = [join(from, entry.name), join(to, entry.name)];
    if (entry.isDirectory()) {
      await stageTree(source, target, root);
    } else if (/\.(m?js|json)$/.test(entry.name)) {
      await cp(source, target);
      if (entry.name.endsWith("js")) {
        const text = await readFile(target, "utf8");
        let sdk = relative(dirname(target), join(root, `${SDK}.js`)).split(sep).join("/");
        if (!sdk.startsWith(".")) sdk = `./${sdk}`;
        const pattern = new RegExp(`(from\\s*|import\\s*\\(?\\s*)(["'])${SDK}\\2`, "g");
        await writeFile(target, text.replace(pattern, `$1"${sdk}"`));
      }
    }
  }
}
