/**
 * The little XML S3 speaks: answers built from escaped text, and the two request bodies the front reads
 * (CompleteMultipartUpload's part list, DeleteObjects' key list), which are flat lists of simple elements.
 */
import { S3Error } from "./errors.js";

export const S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/";

const ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&apos;",
};

const SPECIAL = /[&<>"']/;

export function escapeXml(text: string): string {
  // Most texts have nothing to escape: a test costs less than a replace (a listing escapes thousands).
  return SPECIAL.test(text) ? text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c) : text;
}

/** `<name>text</name>`, or nothing for undefined. */
export function el(name: string, value: string | number | boolean | undefined): string {
  return value === undefined ? "" : `<${name}>${escapeXml(String(value))}</${name}>`;
}

/** A whole answer document. */
export function xmlDocument(root: string, inner: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${S3_NS}">${inner}</${root}>`;
}

export function errorDocument(code: string, message: string, resource: string, requestId: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error>${el("Code", code)}${el("Message", message)}` +
    `${el("Resource", resource)}${el("RequestId", requestId)}</Error>`
  );
}

function unescapeXml(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_m, e: string) => {
    if (e.startsWith("#x")) return String.fromCodePoint(Number.parseInt(e.slice(2), 16));
    if (e.startsWith("#")) return String.fromCodePoint(Number.parseInt(e.slice(1), 10));
    return { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" }[e] ?? "";
  });
}

/** The contents of every `<name>...</name>` in `xml`, in order (raw: may hold child elements). */
export function elements(xml: string, name: string): string[] {
  const out: string[] = [];
  const re = new RegExp(`<${name}(?:\\s[^>]*)?>([\\s\\S]*?)</${name}>`, "g");
  for (const m of xml.matchAll(re)) out.push(m[1] ?? "");
  return out;
}

/** The text of the first `<name>` child, unescaped; undefined when absent. */
export function childText(xml: string, name: string): string | undefined {
  const found = elements(xml, name)[0];
  return found === undefined ? undefined : unescapeXml(found);
}

/** Checks that a body looks like the document it should be. */
export function requireRoot(xml: string, root: string): string {
  const inner = elements(xml, root)[0];
  if (inner === undefined) throw new S3Error("MalformedXML", `the body is not a <${root}> document`);
  return inner;
}
