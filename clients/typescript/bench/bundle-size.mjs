// Size of the runtime-agnostic core as an app ships it: esbuild bundle (ESM, minified,
// noble crypto included, no runtime adapter), then gzip -9. Goal (issue 17): <= 30 KB.
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const result = await build({
  entryPoints: ["src/core/index.ts"],
  bundle: true,
  minify: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  write: false,
});
const code = result.outputFiles[0].contents;
const gz = gzipSync(code, { level: 9 });
const kb = (n) => (n / 1024).toFixed(1);
console.log(`core bundle: ${kb(code.length)} KB minified, ${kb(gz.length)} KB minified + gzip (goal <= 30 KB)`);
