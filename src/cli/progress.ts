import { formatBytes } from "../common/units.js";

/** What a bulk upload has done so far. Bytes count whole files once they are stored. */
export interface ProgressState {
  filesDone: number;
  filesTotal: number;
  filesFailed: number;
  bytesDone: number;
  bytesTotal: number;
  /** ms since the start. */
  elapsedMs: number;
}

/** One status line: `[#####-----] 12/40 files  3.2mb/10mb  1.1mb/s  ETA 6s  (1 failed)`. Pure. */
export function progressLine(s: ProgressState, width = 24): string {
  const ratio =
    s.bytesTotal > 0 ? s.bytesDone / s.bytesTotal : s.filesTotal > 0 ? s.filesDone / s.filesTotal : 1;
  const filled = Math.max(0, Math.min(width, Math.round(ratio * width)));
  const rate = s.elapsedMs > 0 ? (s.bytesDone * 1000) / s.elapsedMs : 0;
  const left = s.bytesTotal - s.bytesDone;
  const eta = rate > 0 ? formatSeconds(left / rate) : "?";
  const failed = s.filesFailed > 0 ? `  (${s.filesFailed} failed)` : "";
  return (
    `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${s.filesDone + s.filesFailed}/${s.filesTotal} files  ` +
    `${formatBytes(s.bytesDone)}/${formatBytes(s.bytesTotal)}  ${formatBytes(Math.round(rate))}/s  ETA ${eta}${failed}`
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
  private shown = false;

  constructor(
    private readonly write: (text: string) => void,
    private readonly tty: boolean,
    private readonly intervalMs = 100,
  ) {}

  update(state: ProgressState, force = false): void {
    if (!this.tty) return;
    if (!force && state.elapsedMs - this.last < this.intervalMs) return;
    this.last = state.elapsedMs;
    this.shown = true;
    this.write(`\r\x1b[2K${progressLine(state)}`);
  }

  /** Prints a line above the bar (a failure, say) without garbling it. */
  log(line: string): void {
    this.write(this.tty && this.shown ? `\r\x1b[2K${line}\n` : `${line}\n`);
  }

  done(): void {
    if (this.tty && this.shown) this.write("\n");
  }
}
