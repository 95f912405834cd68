import assert from "node:assert/strict";
import { test } from "node:test";
import { nodeUrl, startFixture } from "./fixture.js";

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

void test("the bearer scheme is case-insensitive: `bearer` and `BEARER` are accepted by coordinators and nodes", async (t) => {
  const f = await startFixture(t, {
    shards: { "1": ["1", "2"] },
    config: { writeToken: "tok" },
    nodeToken: "ntok",
  });
  const put = (base: string, key: string, authorization: string | undefined): Promise<Response> =>
    fetch(`${base}/${key}`, {
      method: "PUT",
      body: "hi",
      headers: authorization === undefined ? {} : { authorization },
    });
  for (const [i, authorization] of ["Bearer tok", "bearer tok", "BEARER  tok"].entries()) {
    assert.equal((await put(f.url, `ok-${i}`, authorization)).status, 200, authorization);
  }
  assert.equal((await put(nodeUrl(f, "1"), "direct", "bearer ntok")).status, 201);
  assert.deepEqual(await answer(await put(f.url, "no", undefined)), { status: 401, code: "UNAUTHORIZED" });
  assert.deepEqual(await answer(await put(f.url, "no", "Basic dG9rOg==")), {
    status: 401,
    code: "UNAUTHORIZED",
  });
  assert.deepEqual(await answer(await put(f.url, "no", "bearer wrong")), { status: 403, code: "FORBIDDEN" });
  assert.deepEqual(
    await answer(
      await fetch(`${f.url}/1:ok-1`, { method: "DELETE", headers: { authorization: "bearer tok" } }),
    ),
    {
      status: 204,
      code: undefined,
    },
  );
});
