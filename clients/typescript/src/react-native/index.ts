/**
 * @pocketml/device/react-native: the adapters an Expo / React Native app needs. It imports no
 * React Native package: the app passes the modules it already has (as `ortRuntime(ort)` takes
 * onnxruntime-react-native), and each is typed here as the subset used, so this builds and
 * type-checks without them. It cannot run here (no Android or iOS): the tests run it over a
 * stand-in for expo-file-system backed by node:fs (test/react-native.test.ts).
 *
 * ```ts
 * import * as FileSystem from "expo-file-system";          // Expo SDK 55+ (expo-file-system >= 55)
 * import * as Battery from "expo-battery";
 * import NetInfo from "@react-native-community/netinfo";
 * import * as ort from "onnxruntime-react-native";
 * import { Device, expoStorage, ortRuntime, reactNativeConditions } from "@pocketml/device/react-native";
 *
 * const device = await Device.open({
 *   serverUrl, deviceKey, facts, trustedKeys,
 *   storage: expoStorage(FileSystem),                        // <document directory>/pocketml/
 *   runtime: ortRuntime(ort, { loadFrom: "path", formats: ["ort", "onnx"] }),
 *   conditions: reactNativeConditions({ netInfo: NetInfo, battery: Battery }),
 * });
 * ```
 */
import type { DownloadConditions, NetworkType, Storage } from "../core/index.js";
import { PocketMLError } from "../core/index.js";

export * from "../core/index.js";

// -- expo-file-system ----------------------------------------------------------------------------

/**
 * The part of expo-file-system's `File` class (Expo SDK 55+) the storage uses; `Self` is the
 * class itself (what `move` takes). Methods that became asynchronous across releases (`write`,
 * `move`) are awaited either way.
 */
export interface ExpoFile<Self = unknown> {
  readonly uri: string;
  /** True for an existing file (false for a folder or nothing). */
  readonly exists: boolean;
  /** Bytes; 0 when the file does not exist. */
  readonly size: number;
  bytes(): Promise<Uint8Array>;
  /** Creates or replaces the file; `append` (SDK 55+) adds to its end instead. */
  write(content: Uint8Array, options?: { append?: boolean }): void | Promise<void>;
  /** Renames the file; with `overwrite` (SDK 55+) an existing destination is replaced. */
  move(destination: Self, options?: { overwrite?: boolean }): void | Promise<void>;
  /** Throws when the file does not exist. */
  delete(): void;
}

/** The part of expo-file-system's `Directory` class the storage uses. */
export interface ExpoDirectory {
  readonly uri: string;
  readonly exists: boolean;
  create(options?: { intermediates?: boolean; idempotent?: boolean }): void;
  /** Deletes the folder and everything in it; throws when it does not exist. */
  delete(): void;
}

/** `import * as FileSystem from "expo-file-system"`, as far as the storage uses it. */
export interface ExpoFileSystem<F extends ExpoFile<F> = ExpoFile<never>> {
  File: new (uri: string) => F;
  Directory: new (uri: string) => ExpoDirectory;
  Paths: { readonly document: { readonly uri: string }; readonly availableDiskSpace: number };
}

/** A name the SDK builds (a sha256, a fixed file name): nothing that could leave the folder. */
const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

function checked(path: string): string {
  const segments = path.split("/");
  if (!segments.every((s) => SEGMENT.test(s) && s !== "." && s !== "..")) {
    throw new PocketMLError("integrity_failed", `refusing a path outside the cache folder: ${path.slice(0, 100)}`);
  }
  return path;
}

/**
 * A `Storage` in a folder of the app's sandbox through expo-file-system's `File` / `Directory`
 * API (the default export since Expo SDK 54; `write(..., { append })` and `move(..., { overwrite })`
 * need SDK 55+). `root` is the folder's `file://` URI, default `<Paths.document>pocketml/`.
 *
 * - `write` writes `<path>~tmp`, renames it to `<path>~new`, then over `<path>`. expo-file-system
 *   has no atomic replace (`move` with `overwrite` deletes the destination, then renames, on iOS
 *   and Android alike as of expo-file-system 58), so a kill in between leaves `<path>~new`:
 *   complete by construction, it is taken as the file by the next `read`, `size` or `write`.
 *   Readers see the old bytes or the new, never a mix or none.
 * - `append` is `File.write(bytes, { append: true })`, checked by size: an expo-file-system that
 *   ignores the option (before SDK 55) would replace the file, and is refused with an error instead.
 * - `localPath` is the `file://` URI onnxruntime-react-native loads (`loadFrom: "path"`).
 * - Operations on one path run one after the other (a download's appends, a state file's saves).
 */
export function expoStorage<F extends ExpoFile<F>>(
  fs: ExpoFileSystem<F>,
  root?: string,
): Storage & { localPath(path: string): string; freeBytes(): Promise<number> } {
  const base = root ?? `${fs.Paths.document.uri.replace(/\/?$/, "/")}pocketml/`;
  const folder = base.endsWith("/") ? base : `${base}/`;
  if (!folder.startsWith("file://")) {
    throw new PocketMLError("invalid_input", `expoStorage's root must be a file:// URI (a Directory's uri); got ${folder.slice(0, 100)}`);
  }
  const queues = new Map<string, Promise<unknown>>();
  const uri = (path: string): string => folder + checked(path);

  /** Run `op` after the operations already queued on `path`. */
  function serial<T>(path: string, op: () => Promise<T>): Promise<T> {
    const result = (queues.get(path) ?? Promise.resolve()).then(op);
    const tail = result.catch(() => undefined);
    queues.set(path, tail);
    void tail.then(() => queues.get(path) === tail && queues.delete(path));
    return result;
  }

  /** The file at `path`, after finishing a replace a kill interrupted; null when there is none. */
  async function settled(path: string): Promise<F | null> {
    const file = new fs.File(uri(path));
    if (file.exists) return file;
    const pending = new fs.File(`${uri(path)}~new`);
    if (!pending.exists) return null;
    await pending.move(new fs.File(uri(path)), { overwrite: true });
    return new fs.File(uri(path));
  }

  function parentOf(path: string): void {
    const dir = new fs.Directory(uri(path).slice(0, uri(path).lastIndexOf("/") + 1));
    if (!dir.exists) dir.create({ intermediates: true, idempotent: true });
  }

  function removeFile(full: string): void {
    const file = new fs.File(full);
    if (file.exists) file.delete();
  }

  return {
    localPath: uri,

    read: (path) =>
      serial(path, async () => {
        const file = await settled(path);
        return file === null ? null : new Uint8Array(await file.bytes());
      }),

    write: (path, data) =>
      serial(path, async () => {
        parentOf(path);
        await settled(path); // a `~new` left by a kill becomes the file, so the rename below has no destination
        const full = uri(path);
        removeFile(`${full}~tmp`); // a fresh file: a write is never laid over an older, longer one
        const tmp = new fs.File(`${full}~tmp`);
        await tmp.write(data);
        await tmp.move(new fs.File(`${full}~new`), { overwrite: true });
        await new fs.File(`${full}~new`).move(new fs.File(full), { overwrite: true });
      }),

    append: (path, data) =>
      serial(path, async () => {
        parentOf(path);
        const file = (await settled(path)) ?? new fs.File(uri(path));
        const before = file.exists ? file.size : 0;
        await file.write(data, { append: true });
        const after = new fs.File(uri(path)).size;
        if (after !== before + data.length) {
          throw new PocketMLError(
            "pocketml_error",
            `expo-file-system did not append to ${path} (${before} + ${data.length} bytes gave ${after}): ` +
              "it needs File.write(..., { append }) of expo-file-system >= 55 (Expo SDK 55). Upgrade expo-file-system.",
          );
        }
      }),

    size: (path) =>
      serial(path, async () => {
        const file = await settled(path);
        return file === null ? null : file.size;
      }),

    remove: (path) =>
      serial(path, async () => {
        const full = uri(path);
        for (const name of [full, `${full}~new`, `${full}~tmp`]) removeFile(name);
        const dir = new fs.Directory(`${full}/`);
        if (dir.exists) dir.delete();
      }),

    freeBytes: async () => fs.Paths.availableDiskSpace,
  };
}

// -- download conditions -------------------------------------------------------------------------

/** `NetInfo` of @react-native-community/netinfo, as far as the conditions use it. */
export interface NetInfoLike {
  fetch(): Promise<{
    /** `wifi`, `cellular`, `ethernet`, `none`, `unknown`, `bluetooth`, `wimax`, `vpn`, `other`. */
    type: string;
    isConnected: boolean | null;
    isInternetReachable?: boolean | null;
    details: { isConnectionExpensive?: boolean } | null;
  }>;
}

/** expo-battery (`import * as Battery from "expo-battery"`), as far as the conditions use it. */
export interface BatteryLike {
  /** `BatteryState`: 0 unknown, 1 unplugged, 2 charging, 3 full. */
  getBatteryStateAsync(): Promise<number>;
}

/** expo-battery's `BatteryState.CHARGING` and `BatteryState.FULL` (plugged in). */
const PLUGGED_IN = new Set([2, 3]);

/**
 * `DownloadConditions` from NetInfo and expo-battery. Network: no connection (or an internet
 * NetInfo found unreachable) is `offline`; Wi-Fi and Ethernet are `wifi` unless the OS marks
 * them expensive (a metered hotspot); everything else (`cellular`, and `unknown`, `vpn`,
 * `bluetooth`, ... that cannot be told apart from it) is `cellular`, so a `wifi_only` package
 * waits and `max_cellular_bytes` applies. Charging: charging or full (plugged in) is true;
 * `unknown` (a simulator) is false, so a `charging_only` package waits.
 */
export function reactNativeConditions(modules: { netInfo?: NetInfoLike; battery?: BatteryLike }): DownloadConditions {
  const { netInfo, battery } = modules;
  return {
    networkType:
      netInfo &&
      (async (): Promise<NetworkType> => {
        const state = await netInfo.fetch();
        if (state.type === "none" || state.isConnected === false || state.isInternetReachable === false) return "offline";
        if ((state.type === "wifi" || state.type === "ethernet") && state.details?.isConnectionExpensive !== true) return "wifi";
        return "cellular";
      }),
    isCharging: battery && (async () => PLUGGED_IN.has(await battery.getBatteryStateAsync())),
  };
}
