// Serves the web example: the page (app.ts bundled with esbuild), onnxruntime-web's WASM files,
// and the pocketml server's /v1 routes proxied on the same origin (what a production site does
// with its reverse proxy), so the page needs no CORS and sends its device key only there.
//
//   node examples/web/serve.mjs --server http://127.0.0.1:8000 [--port 5173]
//
// then open http://127.0.0.1:5173/?key=<device key>&model=<model name>.
import { existsSync, readFileSync, statSync } from "node:fs";
import { createServer, request } from "node:http";
import { request as httpsRequest } from "node:https";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const ortDist = resolve(here, "..", "..", "node_modules", "onnxruntime-web", "dist");
const types = { ".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript" };

/** The file under `root` named by a URL path, or null (never a path outside `root`). */
function inside(root, path) {
  let name;
  try {
    name = decodeURIComponent(path);
  } catch {
    return null; // a bad %-escape
  }
  const full = normalize(join(root, name));
  return full.startsWith(`${root}/`) && existsSync(full) && statSync(full).isFile() ? full : null;
}

/** Forward one request to the pocketml server, streaming both bodies. */
function proxy(server, req, res) {
  // The server's base plus the request's path: a request target such as `//elsewhere/v1/...`
  // must not choose another host (this is not an open proxy).
  const base = new URL(server);
  const target = new URL(`${base.origin}${req.url}`);
  if (target.origin !== base.origin) {
    res.writeHead(400, { "Content-Type": "text/plain" }).end("Bad request target");
    return;
  }
  const send = target.protocol === "https:" ? httpsRequest : request;
  const headers = { ...req.headers, host: target.host };
  const upstream = send(target, { method: req.method, headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.on("error", (err) => {
    if (!res.headersSent) res.writeHead(502, { "Content-Type": "text/plain" });
    res.end(`The pocketml server at ${server} did not answer: ${err.message}`);
  });
  req.pipe(upstream);
}

/**
 * Start the example's HTTP server. `server` is the pocketml server's base URL.
 * Resolves to `{ url, close() }`.
 */
export async function startExample({ server, port = 5173, host = "127.0.0.1" }) {
  const bundled = await build({
    entryPoints: [join(here, "app.ts")],
    tsconfig: join(here, "tsconfig.json"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    write: false,
  });
  const app = bundled.outputFiles[0].contents;
  const page = readFileSync(join(here, "index.html"));
  const http = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path.startsWith("/v1/") && (req.url ?? "").startsWith("/v1/")) return proxy(server, req, res);
    const file = path.startsWith("/ort/") ? inside(ortDist, path.slice(5)) : null;
    const body = path === "/" ? page : path === "/app.js" ? app : file === null ? null : readFileSync(file);
    if (body === null) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("Not found");
      return;
    }
    const type =
      path === "/"
        ? "text/html; charset=utf-8"
        : path === "/app.js"
          ? "text/javascript"
          : (types[extname(file)] ?? "application/octet-stream");
    res.writeHead(200, { "Content-Type": type }).end(body);
  });
  await new Promise((done, fail) => {
    http.once("error", fail);
    http.listen(port, host, done);
  });
  const address = http.address();
  return {
    url: `http://${host}:${address.port}`,
    close: () => new Promise((done) => http.close(done)),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { values } = parseArgs({
    options: { server: { type: "string" }, port: { type: "string", default: "5173" }, host: { type: "string", default: "127.0.0.1" } },
  });
  if (!values.server) {
    console.error("usage: node examples/web/serve.mjs --server http://127.0.0.1:8000 [--port 5173]");
    process.exit(2);
  }
  const { url } = await startExample({ server: values.server, port: Number(values.port), host: values.host });
  console.log(`pocketml web example at ${url}/?key=<device key>&model=<model>  (proxying /v1 to ${values.server})`);
}
