/** Loading the conformance vectors of the repository (`conformance/`, shared by every client). */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
/** build-test/test -> clients/typescript -> repository root. */
export const REPO = resolve(here, "..", "..", "..", "..");
export const VECTORS = join(REPO, "conformance");

export function vectorJson<T>(name: string): T {
  return JSON.parse(readFileSync(join(VECTORS, name), "utf8")) as T;
}

export function vectorFile(path: string): Uint8Array {
  return new Uint8Array(readFileSync(join(VECTORS, path)));
}
