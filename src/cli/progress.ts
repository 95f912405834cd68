import { formatBytes } from "../common/units.js";

/** What a bulk transfer has done so far. */
export interface ProgressState {
  filesDone: number;
  filesTotal: number;
  filesFailed: number;
  /** Bytes sent so far (of files not failed); 0 with `bytesTotal` 0 when only files are counted. */
  bytesDone: number;
  bytesTotal: number;
  /** ms since the start. */
  elapsedMs: number;
}

/**
 * An ETA is shown only once the rate it comes from was measured this long: the first moments (connections
 * opening, the first files in flight) say little about the rest, and an upload over by then needs none.
 */
export const ETA_AFTER_MS = 2000;

/** One status line: `[#####-----] 12/40 files  3.2mb/10mb  1.1mb/s  ETA 6s  (1 failed)`. Pure. */
export function progressLine(s: ProgressState, width = 24): string {
  const byBytes = s.bytesTotal > 0;
  const done = byBytes ? s.bytesDone : s.filesDone + s.filesFailed;
  const total = byBytes ? s.bytesTotal : s.filesTotal;
  const ratio = total > 0 ? done / total : 1;
  const filled = Math.max(0, Math.min(width, Math.round(ratio * width)));
  const perSec = s.elapsedMs > 0 ? (done * 1000) / s.elapsedMs : 0;
  const bytes = byBytes
    ? `  ${formatBytes(s.bytesDone)}/${formatBytes(s.bytesTotal)}  ${formatBytes(Math.round(perSec))}/s`
    : "";
  const eta =
    s.elapsedMs >= ETA_AFTER_MS && perSec > 0 && done < total
      ? `  ETA ${formatSeconds((total - done) / perSec)}`
      : "";
  const failed = s.filesFailed > 0 ? `  (${s.filesFailed} failed)` : "";
  return (
    `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${s.filesDone + s.filesFailed}/${s.filesTotal} files` +
    `${bytes}${eta}${failed}`
  );
}

export function formatSeconds(sec: number): string {
  if (!Number.isFinite(sec)) return "?";
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * Shows progress: on a terminal one line redrawn at most every `intervalMs`; otherwise nothing here (the
 * caller prints a plain line per file).
 */
export class ProgressBar {
  private last = 0;
  /** The bar as last drawn (empty until then). */
  private line = "";

  constructor(
    private readonly write: (text: string) => void,
    private readonly tty: boolean,
    private readonly intervalMs = 100,
  ) {}

  update(state: ProgressState, force = false): void {
    if (!this.tty) return;
    if (!force && state.elapsedMs - this.last < this.intervalMs) return;
    this.last = state.elapsedMs;
    this.line = progressLine(state);
    this.write(`\r\x1b[2K${this.line}`);
  }

  /** Prints a line above the bar (a stored file, a failure) and draws the bar again below it. */
  log(line: string): void {
    this.write(this.tty && this.line ? `\r\x1b[2K${line}\n${this.line}` : `${line}\n`);
  }

  done(): void {
    if (this.tty && this.line) this.write("\n");
  }
}
