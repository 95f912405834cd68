/**
 * "Acknowledged means final": the record of a client's operations and the verdict on what every replica holds
 * once the cluster is quiet. Pure: no sockets, no timers (the workload and the harness feed it).
 *
 * Model. A PUT of key k lands on a shard chosen by the coordinator, so a file's address is `<shard>:<key>`; a
 * later PUT of k may land on another shard and leave the old version at the old address (intended). State is
 * tracked per address. The ops of one key never overlap (a client owns its keys and runs one op per key at a
 * time), so the ops of a key are totally ordered by their ids.
 *
 * Verdict for an address A = s:k, over the ops of k that can touch A:
 * - an acknowledged PUT of k answered with shard s (A holds its bytes), an acknowledged DELETE of A (A is
 *   absent): definite; the last one is the base state (absent when there is none);
 * - a PUT of k with an unknown outcome (5xx, connection cut, timeout) may have landed on any shard and a
 *   DELETE of A with an unknown outcome may have happened: tolerated, but only after the base;
 * - every replica of s must serve the base state or one tolerated after it. Anything older than the base (a
 *   reverted overwrite, a deleted file back), bytes of a PUT acknowledged elsewhere or refused, and bytes no
 *   op of k wrote are violations; so is a missing file where the base is a PUT.
 * A DELETE of A answered 404 while the base is an acknowledged PUT, with no unknown DELETE of A since, is a
 * violation too (the coordinator found the acknowledged file nowhere).
 */

export type OpKind = "put" | "delete";
export type Outcome = "ack" | "refused" | "unknown";

export interface OpRecord {
  /** Issue order over the whole run; the ops of one key are ordered by it. */
  id: number;
  client: number;
  key: string;
  kind: OpKind;
  /** PUT: the shard of a 200 answer; DELETE: the shard of the address deleted. */
  shard?: string;
  /** 1-based coordinator the op went through. */
  coordinator: number;
  /** ms since the start of the run. */
  startMs: number;
  /** 0 while the op is in flight. */
  endMs: number;
  /** HTTP status, 0 when there was no answer. */
  status: number;
  outcome: Outcome;
  /** Error code or text of a failed op (empty when it succeeded). */
  detail: string;
  /** PUT: digest and size of the body sent. */
  digest?: string;
  size?: number;
}

/** What one replica (a storage node of the address's shard) served for a key, read directly from the node. */
export interface ReplicaRead {
  shard: string;
  key: string;
  server: string;
  /** 200, 404, another status, or 0 when the node did not answer. */
  status: number;
  digest?: string;
  /** `X-Backpack-Version`, when the node sends one (logged, never relied on). */
  version?: string;
  /** The op id named in the body's first line (a hint for bytes that match no op). */
  tag?: number;
  detail?: string;
}

export type ViolationKind =
  | "reverted" // an older write of the address than the last acknowledged one
  | "resurrected" // a write of the address from before its acknowledged delete
  | "lost" // absent, where the last acknowledged op is a PUT
  | "misplaced" // bytes of a PUT acknowledged on another shard, or refused
  | "unknown-bytes" // bytes that no PUT of the key sent
  | "unreadable" // neither 200 nor 404 from a node that is up
  | "delete-404"; // a DELETE found the acknowledged file nowhere

export interface Violation {
  kind: ViolationKind;
  shard: string;
  key: string;
  /** The replica (server id); undefined for a violation seen by an op (delete-404). */
  server?: string;
  served: string;
  expected: string;
  /** Every op of the key, in order (those that can touch the address are marked in the report). */
  history: OpRecord[];
  /** The op that saw it (delete-404), or whose bytes were served. */
  op?: OpRecord;
  version?: string;
}

export interface Verdict {
  violations: Violation[];
  addresses: number;
  replicas: number;
  /** Replicas serving the result of an unknown-outcome op (allowed). */
  tolerated: number;
  /** Addresses whose replicas disagree, each serving an allowed state (only unknown-outcome ops differ). */
  divergent: number;
}

/** How an answer classifies: 2xx acknowledged, 4xx refused, a refused connection refused (nothing was sent). */
export function classify(status: number, errorCode?: string): Outcome {
  if (status === 0) return errorCode === "ECONNREFUSED" ? "refused" : "unknown";
  if (status >= 200 && status < 300) return "ack";
  if (status >= 400 && status < 500) return "refused";
  return "unknown";
}

/** The state an address can be in: absent, or the bytes of one PUT. */
type State = { kind: "absent"; op?: OpRecord } | { kind: "body"; op: OpRecord };

interface Expectation {
  base: State;
  tolerated: State[];
}

/** Whether `op` (of the address's key) can change address `shard`, and how surely. */
function effectOn(op: OpRecord, shard: string): "definite" | "maybe" | undefined {
  if (op.outcome === "refused") return undefined;
  if (op.kind === "put") {
    if (op.outcome === "unknown") return "maybe";
    return op.shard === shard ? "definite" : undefined;
  }
  if (op.shard !== shard) return undefined;
  return op.outcome === "ack" ? "definite" : "maybe";
}

function stateAfter(op: OpRecord): State {
  return op.kind === "put" ? { kind: "body", op } : { kind: "absent", op };
}

/** The base state and the tolerated states of `shard`:key after `ops` (the key's ops, in order). */
function expectationOf(ops: readonly OpRecord[], shard: string, upTo = ops.length): Expectation {
  let base: State = { kind: "absent" };
  let tolerated: State[] = [];
  for (const op of ops.slice(0, upTo)) {
    const effect = effectOn(op, shard);
    if (effect === "definite") {
      base = stateAfter(op);
      tolerated = [];
    } else if (effect === "maybe") {
      tolerated.push(stateAfter(op));
    }
  }
  return { base, tolerated };
}

function sameState(a: State, b: State): boolean {
  if (a.kind === "absent" || b.kind === "absent") return a.kind === b.kind;
  return a.op.digest === b.op.digest;
}

export function describeState(s: State): string {
  if (s.kind === "absent") return s.op ? `404 (deleted by #${s.op.id})` : "404 (never written here)";
  return `the bytes of #${s.op.id} (${s.op.size} B)`;
}

function describeExpectation(e: Expectation): string {
  const parts = [describeState(e.base)];
  if (e.tolerated.length > 0) {
    parts.push(`or, from later ops with unknown outcome: ${e.tolerated.map(describeState).join(", ")}`);
  }
  return parts.join(" ");
}

/** Groups ops by key, each group in issue order. */
export function opsByKey(ops: readonly OpRecord[]): Map<string, OpRecord[]> {
  const byKey = new Map<string, OpRecord[]>();
  for (const op of ops) {
    let list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, (list = []));
    list.push(op);
  }
  for (const list of byKey.values()) list.sort((a, b) => a.id - b.id);
  return byKey;
}

/**
 * The verdict on a run: `reads` are every replica of every address read after the quiet period; `ops` the
 * whole history. Reads of keys without ops are checked against "absent".
 */
export function checkFinalState(ops: readonly OpRecord[], reads: readonly ReplicaRead[]): Verdict {
  const byKey = opsByKey(ops);
  const violations: Violation[] = [];
  let tolerated = 0;
  const served = new Map<string, Set<string>>();
  const flagged = new Set<string>();

  for (const r of reads) {
    const history = byKey.get(r.key) ?? [];
    const e = expectationOf(history, r.shard);
    const violation = (kind: ViolationKind, what: string, op?: OpRecord): void => {
      violations.push({
        kind,
        shard: r.shard,
        key: r.key,
        server: r.server,
        served: what,
        expected: describeExpectation(e),
        history,
        ...(op !== undefined ? { op } : {}),
        ...(r.version !== undefined ? { version: r.version } : {}),
      });
      flagged.add(`${r.shard}:${r.key}`);
    };
    let state: State;
    if (r.status === 404) {
      state = { kind: "absent" };
    } else if (r.status === 200) {
      const op = history.find((o) => o.kind === "put" && o.digest === r.digest);
      if (op === undefined) {
        violation("unknown-bytes", `bytes no PUT of the key sent (tag #${r.tag ?? "?"})`);
        continue;
      }
      state = { kind: "body", op };
    } else {
      violation("unreadable", `status ${r.status}${r.detail ? ` (${r.detail})` : ""}`);
      continue;
    }
    const address = `${r.shard}:${r.key}`;
    let seen = served.get(address);
    if (seen === undefined) served.set(address, (seen = new Set()));
    seen.add(state.kind === "absent" ? "absent" : (state.op.digest ?? ""));

    if (sameState(state, e.base)) continue;
    if (e.tolerated.some((t) => sameState(state, t))) {
      tolerated++;
      continue;
    }
    if (state.kind === "absent") {
      violation("lost", "404");
      continue;
    }
    const op = state.op;
    const baseOp = e.base.op;
    const what = `the bytes of #${op.id} (${op.outcome} PUT${op.shard ? ` on shard ${op.shard}` : ""})`;
    if (baseOp !== undefined && op.id < baseOp.id && effectOn(op, r.shard) !== undefined) {
      violation(e.base.kind === "absent" ? "resurrected" : "reverted", what, op);
    } else {
      violation("misplaced", what, op);
    }
  }

  for (const [key, history] of byKey) {
    history.forEach((op, i) => {
      if (op.kind !== "delete" || op.status !== 404 || op.shard === undefined) return;
      const before = expectationOf(history, op.shard, i);
      // Only an unknown DELETE of the address since the acknowledged PUT could have removed it.
      if (before.base.kind !== "body" || before.tolerated.some((s) => s.kind === "absent")) return;
      violations.push({
        kind: "delete-404",
        shard: op.shard,
        key,
        served: `404 to DELETE #${op.id}: no node of the shard had the file`,
        expected: describeExpectation(before),
        history,
        op,
      });
    });
  }

  let divergent = 0;
  for (const [address, set] of served) if (set.size > 1 && !flagged.has(address)) divergent++;
  return { violations, addresses: served.size, replicas: reads.length, tolerated, divergent };
}

/** Counts of ops by kind and outcome, e.g. `put ack 2871` (`put in-flight` for ops not answered yet). */
export function countOps(
  ops: readonly OpRecord[],
  keyOf: (op: OpRecord) => string = (op) => `${op.kind} ${op.endMs === 0 ? "in-flight" : op.outcome}`,
): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const op of ops) {
    const k = keyOf(op);
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts;
}

/** Something that happened to the cluster during the run (a kill, a restart), shown next to the ops. */
export interface ClusterEvent {
  atMs: number;
  what: string;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}

export function formatOp(op: OpRecord, shard?: string): string {
  const target = op.kind === "put" ? `PUT ${op.key}` : `DELETE ${op.shard}:${op.key}`;
  const answer =
    op.status === 0 ? `no answer (${op.detail})` : `${op.status}${op.detail ? ` ${op.detail}` : ""}`;
  const landed = op.kind === "put" && op.outcome === "ack" ? ` shard ${op.shard}` : "";
  const touches = shard === undefined ? "" : effectOn(op, shard) === undefined ? "   " : " * ";
  const body = op.kind === "put" ? ` [${op.size} B ${op.digest?.slice(0, 8)}]` : "";
  return (
    `${touches}#${op.id} ${seconds(op.startMs)}-${seconds(op.endMs)} via coordinator ${op.coordinator}: ` +
    `${target}${body} -> ${answer}${landed} (${op.outcome})`
  );
}

/**
 * A violation as a reader needs it: the address, the replica, what it served and what was expected, the op
 * history of the key (ops that can touch the address marked `*`), and the cluster events around it.
 */
/** How to print a report: the run's start on the wall clock relates a version's stamp to the ops' times. */
export interface ReportOptions {
  events?: readonly ClusterEvent[];
  /** `Date.now()` when the run's clock read 0. */
  startEpochMs?: number;
  /** Violations printed in full (the others are counted). */
  detailed?: number;
}

/** `X-Backpack-Version` with the run time its stamp (µs on the wall clock) stands for, when known. */
function describeVersion(version: string, startEpochMs: number | undefined): string {
  const m = /^(\d{16})-[0-9a-f]{4}$/i.exec(version);
  if (m === null || startEpochMs === undefined) return version;
  return `${version}, stamped at ${seconds(Number(m[1]) / 1000 - startEpochMs)}`;
}

export function formatViolation(v: Violation, options: ReportOptions = {}): string {
  const events = options.events ?? [];
  const where = v.server === undefined ? "" : ` on server ${v.server}`;
  // A long history is cut to what matters: the 12 ops up to the one that saw a delete-404, else from the op
  // whose bytes were served (or the last 12) to the end.
  const at = v.op === undefined ? -1 : v.history.indexOf(v.op);
  const end = v.kind === "delete-404" ? at + 1 : v.history.length;
  const from = Math.max(0, v.kind === "delete-404" || at < 0 ? end - 12 : Math.min(at, end - 12));
  const shown = v.history.slice(from, end);
  const lines = [
    `${v.kind.toUpperCase()}: ${v.shard}:${v.key}${where} served ${v.served}` +
      (v.version ? ` (X-Backpack-Version ${describeVersion(v.version, options.startEpochMs)})` : ""),
    `  expected: ${v.expected}`,
    `  ops of key ${v.key} (* = can touch ${v.shard}:${v.key})${shown.length < v.history.length ? `, ${shown.length} of ${v.history.length}` : ""}:`,
    ...shown.map((op) => `    ${formatOp(op, v.shard)}`),
  ];
  // Events from 2 s before the served op (or the first op shown) to 3 s after the last op that can touch the
  // address: kills and restarts that may explain it, not every event of a long history.
  const touching = shown.filter((op) => effectOn(op, v.shard) !== undefined);
  const first = (v.op ?? shown[0])?.startMs ?? 0;
  const last = (touching.at(-1) ?? shown.at(-1))?.endMs ?? 0;
  const near = events.filter((e) => e.atMs >= first - 2000 && e.atMs <= last + 3000);
  if (near.length > 0) {
    lines.push("  cluster events around them:");
    for (const e of near) lines.push(`    ${seconds(e.atMs)} ${e.what}`);
  }
  return lines.join("\n");
}

/** One line per violation kind with its count, and the first `detailed` violations in full. */
export function formatVerdict(verdict: Verdict, options: ReportOptions = {}): string {
  const detailed = options.detailed ?? 20;
  const byKind = new Map<string, number>();
  for (const v of verdict.violations) byKind.set(v.kind, (byKind.get(v.kind) ?? 0) + 1);
  const lines = [
    `${verdict.violations.length} violations over ${verdict.addresses} addresses, ${verdict.replicas} replicas read ` +
      `(${verdict.tolerated} replicas serve an unknown-outcome op's result; ${verdict.divergent} addresses diverge ` +
      `within what is allowed)`,
  ];
  for (const [kind, n] of byKind) lines.push(`  ${kind}: ${n}`);
  // One of each kind first, then the others in order, up to `detailed`.
  const firsts = [...new Set(verdict.violations.map((v) => v.kind))].map((kind) =>
    verdict.violations.find((v) => v.kind === kind)!,
  );
  const shown = [...new Set([...firsts, ...verdict.violations])].slice(0, detailed);
  for (const v of shown) lines.push("", formatViolation(v, options));
  if (verdict.violations.length > detailed) {
    lines.push("", `... and ${verdict.violations.length - detailed} more`);
  }
  return lines.join("\n");
}
