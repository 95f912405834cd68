/**
 * Interned content types: the index stores a 16-bit id per object instead of a string. Id 0 means none. A node
 * sees a handful of distinct types; should clients send more than the ids can name, the rest are kept per
 * entry in `overflow` (correct, just not compact).
 */
export const NO_TYPE = 0;
export const OVERFLOW_TYPE = 0xffff;

export class ContentTypes {
  private readonly names: (string | undefined)[] = [undefined];
  private readonly bytes: number[] = [0];
  private readonly ids = new Map<string, number>();
  /** Entry index → content type, for entries whose type did not get an id. */
  readonly overflow = new Map<number, string>();

  constructor(initial: readonly string[] = []) {
    for (const name of initial) this.intern(name);
  }

  /** The id of a type (assigning one if there is room), or OVERFLOW_TYPE. */
  intern(name: string | undefined): number {
    if (name === undefined || name === "") return NO_TYPE;
    const known = this.ids.get(name);
    if (known !== undefined) return known;
    if (this.names.length >= OVERFLOW_TYPE) return OVERFLOW_TYPE;
    const id = this.names.length;
    this.names.push(name);
    this.bytes.push(Buffer.byteLength(name, "utf8"));
    this.ids.set(name, id);
    return id;
  }

  name(id: number, entry: number): string | undefined {
    return id === OVERFLOW_TYPE ? this.overflow.get(entry) : this.names[id];
  }

  byteLength(id: number, entry: number): number {
    if (id === OVERFLOW_TYPE) return Buffer.byteLength(this.overflow.get(entry) ?? "", "utf8");
    return this.bytes[id] ?? 0;
  }

  /** Every named type in id order (id 1 first), for a checkpoint. */
  list(): string[] {
    return this.names.slice(1) as string[];
  }
}
