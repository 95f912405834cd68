/**
 * Admission control for uploads: bounds how many bodies and how many body bytes are being received at once.
 * Past a bound the caller answers 503 OVERLOADED with Retry-After at once; nothing waits in a queue, so a
 * flood of uploads cannot pile up memory or file handles. Pure bookkeeping: no I/O, no timers.
 */
export class UploadGate {
  private uploads = 0;
  private bytes = 0;

  constructor(
    private readonly maxUploads: number,
    /** An upload is admitted past this only when it is alone, so one body up to the size limit always fits. */
    private readonly maxBytes: number,
  ) {}

  /** Admits one upload reserving `bytes` (its declared length, or 0 for a chunked body); false when full. */
  tryEnter(bytes: number): boolean {
    if (this.uploads >= this.maxUploads) return false;
    if (this.uploads > 0 && this.bytes + bytes > this.maxBytes) return false;
    this.uploads++;
    this.bytes += bytes;
    return true;
  }

  /**
   * Reserves `bytes` more for an admitted upload whose length was not declared (chunked), as they arrive.
   * False when over the byte bound while other uploads are in flight.
   */
  tryGrow(bytes: number): boolean {
    if (this.uploads > 1 && this.bytes + bytes > this.maxBytes) return false;
    this.bytes += bytes;
    return true;
  }

  /** Releases an upload and everything it reserved. */
  leave(reservedBytes: number): void {
    this.uploads--;
    this.bytes -= reservedBytes;
  }

  get inflightUploads(): number {
    return this.uploads;
  }

  get inflightBytes(): number {
    return this.bytes;
  }
}
