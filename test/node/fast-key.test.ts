import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { test } from "node:test";
import { keyFromTarget } from "../../src/common/key.js";
import { keyOfTarget } from "../../src/node/fast-key.js";

function outcome(f: () => string): string {
  try {
    return `key:${f()}`;
  } catch (err) {
    return `error:${(err as { code?: string }).code ?? "?"}`;
  }
}

void test("the fast key path agrees with common/key.ts on every target", () => {
  const fixed = [
    "/",
    "/a",
    "/a/b",
    "/.",
    "/..",
    "/a/.",
    "/a/..",
    "/./a",
    "/../a",
    "/a/./b",
    "/a/../b",
    "/...",
    "/.a",
    "/a.",
    "/a//b",
    "//",
    "/a?b",
    "/a%20b",
    "/%2e",
    "/a#b",
    "a",
    "",
    "/" + "k".repeat(1024),
    "/" + "k".repeat(1025),
    "/\u00e9",
    "/a b",
    "/a\u0000b",
    "/a\u007f",
  ];
  const alphabet = [
    "a",
    "Z",
    "0",
    "/",
    ".",
    "-",
    "_",
    "~",
    "%",
    "%2e",
    "%2f",
    "%00",
    "%c3%a9",
    "?",
    "#",
    " ",
    "é",
    "\u0001",
    ":",
    "@",
    "!",
    "'",
    "+",
    "=",
    ";",
    ",",
  ];
  const random = Array.from({ length: 20_000 }, () => {
    let s = "/";
    const len = randomInt(0, 12);
    for (let i = 0; i < len; i++) s += alphabet[randomInt(alphabet.length)] as string;
    return s;
  });
  for (const target of [...fixed, ...random]) {
    assert.equal(
      outcome(() => keyOfTarget(target)),
      outcome(() => keyFromTarget(target)),
      JSON.stringify(target),
    );
  }
});
