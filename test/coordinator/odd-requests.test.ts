import assert from "node:assert/strict";
import { test } from "node:test";
import { startFixture } from "./fixture.js";

/**
 * Odd or hostile requests to a coordinator: each gets an HTTP answer with the status and stable code the docs
 * give (docs/http-api.md, "Coordinator"), never a 500, a hang or a dropped connection.
 */

async function answer(res: Response): Promise<{ status: number; code: string | undefined }> {
  const text = await res.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { code?: string }).code;
  } catch {
    code = undefined;
  }
  return { status: res.status, code };
}

void test("shard ids that name Object members (/__proto__:x, /constructor:x) are 404 NOT_FOUND, not 500", async (t) => {
  const f = await startFixture(t, {});
  for (const id of ["__proto__", "constructor", "toString", "hasOwnProperty"]) {
    for (const method of ["GET", "DELETE"]) {
      assert.deepEqual(await answer(await fetch(`${f.url}/${id}:x`, { method })), {
        status: 404,
        code: "NOT_FOUND",
      });
    }
    assert.equal((await fetch(`${f.url}/${id}:x`, { method: "HEAD" })).status, 404);
  }
});
