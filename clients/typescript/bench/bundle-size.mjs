// Size of the runtime-agnostic core as an app ships it: esbuild bundle (ESM, minified,
// noble crypto included, no runtime adapter), then gzip -9. Goal (issue 17): <= 30 KB.
// The opt-in modules (profile sketches, consented capture) are measured on top of it: an app
// that imports them ships that much more.
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const bundles = [
  ["core (@pocketml/device)", 'export * from "./src/core/index.ts";'],
  ["core + sketch", 'export * from "./src/core/index.ts"; export { Sketcher } from "./src/core/sketch.ts";'],
  ["core + capture", 'export * from "./src/core/index.ts"; export { SampleCapture } from "./src/core/capture.ts";'],
  ["web (core + IndexedDB)", 'export * from "./src/web/index.ts";'],
  ["react-native (core + Expo)", 'export * from "./src/react-native/index.ts";'],
  [
    "core + sketch + capture",
    'export * from "./src/core/index.ts"; export { Sketcher } from "./src/core/sketch.ts"; export { SampleCapture } from "./src/core/capture.ts";',
  ],
];
const kb = (n) => (n / 1024).toFixed(1);
console.log("bundle                      minified  min + gzip");
for (const [name, contents] of bundles) {
  const result = await build({
    stdin: { contents, resolveDir: ".", loader: "ts" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    write: false,
  });
  const code = result.outputFiles[0].contents;
  const gz = gzipSync(code, { level: 9 });
  console.log(`${name.padEnd(26)} ${kb(code.length).padStart(6)} KB ${kb(gz.length).padStart(7)} KB`);
}
console.log("goal (issue 17): the core <= 30 KB min + gzip");
