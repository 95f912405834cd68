import { BackpackError } from "../common/errors.js";
import { setLogLevel, type Logger, type LogLevel } from "../common/logger.js";

/**
 * Runtime settings of the whole cluster, kept in the cluster map (`settings` document) and changed with one
 * admin command (`backpack-coordinator-set-settings`). Every process applies them without a restart: those
 * that read the map when it changes, and every one (storage nodes included) from the ring's broadcast
 * (docs/ring.md, "Settings that propagate"). `version` is raised by every change: a process applies only a
 * version above the one it has, so a late or repeated delta is ignored.
 */
export interface RuntimeSettings {
  /** 0 before the first change. */
  version: number;
  /** Every process logs at this level; null: each at the level it was started with. */
  logLevel: LogLevel | null;
  /**
   * Requests per second each client may make, summed over every coordinator (the ring shares the counts),
   * with `burst` allowed above it; null: no limit (the default).
   */
  clientRate: { perSec: number; burst: number } | null;
  /** Clients (IP addresses, or write tokens' fingerprints) every coordinator refuses with 403. */
  blocklist: string[];
}

export type SettingsPatch = Partial<Omit<RuntimeSettings, "version">> & {
  block?: readonly string[];
  unblock?: readonly string[];
};

export const NO_SETTINGS: RuntimeSettings = Object.freeze({
  version: 0,
  logLevel: null,
  clientRate: null,
  blocklist: Object.freeze([]) as unknown as string[],
});

const LEVELS: readonly string[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
/** A blocklist entry: an IPv4/IPv6 address or a token fingerprint (`token:` and hex). */
const CLIENT = /^(?:[0-9a-fA-F:.]{2,45}|token:[0-9a-f]{8,64})$/;

/** Reads the `settings` document leniently: anything malformed is left at its default. */
export function decodeSettings(data: unknown): RuntimeSettings {
  if (typeof data !== "object" || data === null || Array.isArray(data)) return NO_SETTINGS;
  const d = data as Record<string, unknown>;
  const version = Number.isSafeInteger(d.version) && (d.version as number) > 0 ? (d.version as number) : 0;
  const logLevel =
    typeof d.logLevel === "string" && LEVELS.includes(d.logLevel) ? (d.logLevel as LogLevel) : null;
  const rate = d.clientRate as { perSec?: unknown; burst?: unknown } | null | undefined;
  const clientRate =
    rate &&
    typeof rate.perSec === "number" &&
    rate.perSec > 0 &&
    typeof rate.burst === "number" &&
    rate.burst >= 0
      ? { perSec: rate.perSec, burst: rate.burst }
      : null;
  const blocklist = Array.isArray(d.blocklist)
    ? d.blocklist.filter((x): x is string => typeof x === "string" && CLIENT.test(x))
    : [];
  return { version, logLevel, clientRate, blocklist };
}

/** The settings after `patch`, one version up; refuses a patch that is not valid (nothing changes then). */
export function applySettingsPatch(current: RuntimeSettings, patch: SettingsPatch): RuntimeSettings {
  const problems: string[] = [];
  if (patch.logLevel !== undefined && patch.logLevel !== null && !LEVELS.includes(patch.logLevel)) {
    problems.push(
      `log level must be one of ${LEVELS.join(", ")} (or default), got ${String(patch.logLevel)}`,
    );
  }
  const r = patch.clientRate;
  if (r !== undefined && r !== null && !(r.perSec > 0 && Number.isFinite(r.perSec) && r.burst >= 0)) {
    problems.push("the client rate must be a number of requests per second > 0, with a burst ≥ 0");
  }
  for (const c of [...(patch.block ?? []), ...(patch.blocklist ?? [])]) {
    if (!CLIENT.test(c)) problems.push(`"${c}" is neither an IP address nor token:<hex fingerprint>`);
  }
  if (problems.length > 0) throw new BackpackError("INVALID_ARGUMENT", problems.join("; "));
  const blocked = new Set(patch.blocklist ?? current.blocklist);
  for (const c of patch.block ?? []) blocked.add(c);
  for (const c of patch.unblock ?? []) blocked.delete(c);
  return {
    version: current.version + 1,
    logLevel: patch.logLevel === undefined ? current.logLevel : patch.logLevel,
    clientRate: patch.clientRate === undefined ? current.clientRate : patch.clientRate,
    blocklist: [...blocked].sort(),
  };
}

/**
 * The settings a process has applied: the highest version it was offered, from the cluster map, the ring or a
 * coordinator's `/cluster`. Each new version is applied once (the log level at once; the rest is read by those
 * who use it) and `appliedAt` notes when (ms since the epoch), for `/stats`.
 */
export class LiveSettings {
  private value: RuntimeSettings = NO_SETTINGS;
  private at = 0;
  private readonly listeners: ((s: RuntimeSettings) => void)[] = [];

  constructor(private readonly log: Logger) {}

  get current(): RuntimeSettings {
    return this.value;
  }

  /** Applies `s` when it is newer than what this process has; true when it was. */
  offer(s: RuntimeSettings | undefined, via: string): boolean {
    if (s === undefined || s.version <= this.value.version) return false;
    const previous = this.value;
    this.value = s;
    this.at = Date.now();
    setLogLevel(this.log, s.logLevel);
    this.log.info({ version: s.version, previous: previous.version, via }, "runtime settings applied");
    for (const l of this.listeners) l(s);
    return true;
  }

  onChange(listener: (s: RuntimeSettings) => void): void {
    this.listeners.push(listener);
  }

  /** For `/stats`: the settings and when they were applied. */
  status(): RuntimeSettings & { appliedAt: number } {
    return { ...this.value, appliedAt: this.at };
  }
}

/** Versioned deltas over the ring (structurally: `ServiceRing`'s `publish` and `onDelta`). */
export interface DeltaChannel {
  publish(kind: string, version: number, value: unknown): void;
  onDelta(kind: string, handler: (value: unknown) => void): void;
}

/**
 * Keeps `settings` current from the ring's deltas and, for a process that reads the cluster map (`map`), from
 * the map, passing on over the ring every version it finds there (so storage nodes, which do not read the map,
 * get it within a few hops). Returns the stop function.
 */
export function followSettings(
  settings: LiveSettings,
  ring: DeltaChannel,
  map?: {
    snapshot(): { settings: RuntimeSettings };
    onChange(fn: (s: { settings: RuntimeSettings }) => void): () => void;
  },
): () => void {
  ring.onDelta("settings", (value) => settings.offer(decodeSettings(value), "ring"));
  if (!map) return () => undefined;
  const fromMap = (s: RuntimeSettings): void => {
    settings.offer(s, "cluster map");
    if (s.version > 0) ring.publish("settings", s.version, s);
  };
  fromMap(map.snapshot().settings);
  return map.onChange((snapshot) => fromMap(snapshot.settings));
}
