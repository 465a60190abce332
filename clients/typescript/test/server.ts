/**
 * The conformance world for the TypeScript tests: `conformance/serve.py` run as a child
 * process (a real `pocketml server` with the models of `server.json`), its first stdout line
 * parsed. Closing its stdin stops it, so it never outlives the test process.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { REPO, VECTORS } from "./vectors.js";

export interface World {
  url: string;
  app_id: string;
  device_key: string;
  admin_token: string;
  models: Record<string, { package_id: string; package_size: number; package_url: string; content_key_id: string | null }>;
  /** The profile-sketch case's own app (serve.py `prepare_sketch`). */
  sketch: { app_id: string; device_key: string; admin_token: string };
  stop(): Promise<void>;
}

/** The Python that has pocketml: POCKETML_PYTHON, else the repository's `.venv`. */
function python(): string {
  const chosen = process.env.POCKETML_PYTHON ?? join(REPO, ".venv", "bin", "python");
  if (!existsSync(chosen)) throw new Error(`no Python with pocketml at ${chosen}: run make install or set POCKETML_PYTHON`);
  return chosen;
}

export type Database = "sqlite" | "postgresql";

/**
 * serve.py on SQLite, or on a fresh PostgreSQL database it creates on the server of
 * POCKETML_TEST_DATABASE_URL and drops at exit (a server that does not answer fails the run).
 */
export async function startWorld(database: Database = "sqlite"): Promise<World> {
  const args = [join(VECTORS, "serve.py")];
  if (database === "postgresql") args.push("--postgres", process.env.POCKETML_TEST_DATABASE_URL as string);
  const child: ChildProcessWithoutNullStreams = spawn(python(), args, {
    env: { ...process.env, PYTHONPATH: [join(REPO, "src"), process.env.PYTHONPATH].filter(Boolean).join(":") },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const lines = createInterface({ input: child.stdout });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`serve.py exited (${code}) before serving:\n${stderr}`)));
  });
  const world = JSON.parse(first) as Omit<World, "stop">;
  return {
    ...world,
    async stop() {
      child.stdin.end();
      await exited;
    },
  };
}
