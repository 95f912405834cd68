import { parseArgs as nodeParseArgs } from "node:util";

/** A command's arguments: positionals (each also accepted as `--<name>`) and named options. */
export interface CommandSpec {
  /** The name an operator types, e.g. `backpack-coordinator-add-shard` or `backpack put`. */
  name: string;
  summary: string;
  positionals: readonly PositionalSpec[];
  options: readonly OptionSpec[];
  /** Extra paragraphs for `--help` (examples, notes). */
  notes?: string;
}

export interface PositionalSpec {
  name: string;
  description: string;
  optional?: boolean;
  /** Takes every remaining argument (only the last positional). */
  variadic?: boolean;
}

export interface OptionSpec {
  name: string;
  type: "string" | "boolean";
  description: string;
  short?: string;
  /** Shown in `--help`; the command applies its own defaults. */
  default?: string;
  multiple?: boolean;
}

export interface ParsedArgs {
  positionals: Record<string, string | undefined>;
  rest: string[];
  options: Record<string, string | boolean | string[] | undefined>;
  help: boolean;
}

/** A wrong command line: printed with the usage, exit 2, nothing changed. */
export class UsageError extends Error {
  override name = "UsageError";
}

type ParseOptions = Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }>;

function parseOptionsOf(spec: CommandSpec): ParseOptions {
  const options: ParseOptions = { help: { type: "boolean", short: "h" } };
  for (const p of spec.positionals) if (!p.variadic) options[p.name] = { type: "string" };
  for (const o of spec.options) {
    options[o.name] = {
      type: o.type,
      ...(o.short ? { short: o.short } : {}),
      ...(o.multiple ? { multiple: true } : {}),
    };
  }
  return options;
}

/** The positional words of a command line, options (known or not) and their values left out; never throws. */
export function positionalArgs(spec: CommandSpec, argv: readonly string[]): string[] {
  return nodeParseArgs({
    args: [...argv],
    options: parseOptionsOf(spec),
    allowPositionals: true,
    strict: false,
  }).positionals;
}

export function parseCommandLine(spec: CommandSpec, argv: readonly string[]): ParsedArgs {
  const options = parseOptionsOf(spec);
  let parsed: ReturnType<typeof nodeParseArgs>;
  try {
    parsed = nodeParseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional.*$/s, ""));
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const help = values.help === true;
  const given = [...parsed.positionals];
  const positionals: Record<string, string | undefined> = {};
  let rest: string[] = [];
  for (const p of spec.positionals) {
    if (p.variadic) {
      rest = given.splice(0);
      if (rest.length === 0 && !p.optional && !help) throw new UsageError(`missing <${p.name}>`);
      continue;
    }
    const named = values[p.name];
    if (typeof named === "string") positionals[p.name] = named;
    else if (given.length > 0) positionals[p.name] = given.shift();
    else if (!p.optional && !help) throw new UsageError(`missing <${p.name}>`);
  }
  if (given.length > 0 && !help) throw new UsageError(`unexpected argument ${JSON.stringify(given[0])}`);
  const opts: ParsedArgs["options"] = {};
  for (const o of spec.options) opts[o.name] = values[o.name];
  return { positionals, rest, options: opts, help };
}

export function usageLine(spec: CommandSpec): string {
  const pos = spec.positionals
    .map((p) => {
      const n = p.variadic ? `<${p.name}>...` : `<${p.name}>`;
      return p.optional ? `[${n}]` : n;
    })
    .join(" ");
  return `Usage: ${spec.name}${pos ? " " + pos : ""} [options]`;
}

/** The `--help` text; `docs/commands.md` carries the same lines (a test compares them). */
export function formatHelp(spec: CommandSpec): string {
  const lines = [usageLine(spec), "", spec.summary, ""];
  if (spec.positionals.length > 0) {
    lines.push("Arguments:");
    for (const p of spec.positionals) {
      const flag = p.variadic ? "" : ` (or --${p.name})`;
      lines.push(`  ${p.name}${flag}`.padEnd(30) + ` ${p.description}${p.optional ? " (optional)" : ""}`);
    }
    lines.push("");
  }
  lines.push("Options:");
  for (const o of spec.options) {
    const name = `  ${o.short ? `-${o.short}, ` : ""}--${o.name}${o.type === "string" ? " <value>" : ""}`;
    lines.push(
      name.padEnd(30) + ` ${o.description}${o.default !== undefined ? ` (default: ${o.default})` : ""}`,
    );
  }
  lines.push("  -h, --help".padEnd(30) + " show this help");
  if (spec.notes) lines.push("", spec.notes.trim());
  return lines.join("\n") + "\n";
}
