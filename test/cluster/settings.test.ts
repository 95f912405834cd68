import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { applySettingsPatch, decodeSettings, LiveSettings, NO_SETTINGS } from "../../src/cluster/settings.js";
import { silentLogger } from "../../src/common/logger.js";

void describe("runtime settings", () => {
  void it("are read leniently: a malformed field keeps its default", () => {
    assert.deepEqual(decodeSettings("nonsense"), NO_SETTINGS);
    assert.deepEqual(
      decodeSettings({
        version: 3,
        logLevel: "loud",
        clientRate: { perSec: -1, burst: 1 },
        blocklist: ["1.2.3.4", 7, "a b"],
      }),
      { version: 3, logLevel: null, clientRate: null, blocklist: ["1.2.3.4"] },
    );
  });

  void it("refuse a bad patch as a whole", () => {
    assert.throws(() => applySettingsPatch(NO_SETTINGS, { logLevel: "debug", block: ["x y"] }), {
      code: "INVALID_ARGUMENT",
    });
    assert.throws(() => applySettingsPatch(NO_SETTINGS, { clientRate: { perSec: 0, burst: 1 } }), {
      code: "INVALID_ARGUMENT",
    });
  });

  void it("are applied once per newer version; a stale or repeated one is ignored", () => {
    const live = new LiveSettings(silentLogger);
    const seen: number[] = [];
    live.onChange((s) => seen.push(s.version));
    const v1 = applySettingsPatch(NO_SETTINGS, { logLevel: "warn" });
    const v2 = applySettingsPatch(v1, { block: ["::1"] });
    assert.equal(live.offer(v2, "ring"), true);
    assert.equal(live.offer(v1, "ring"), false, "stale");
    assert.equal(live.offer(v2, "cluster map"), false, "repeated");
    assert.deepEqual(seen, [2]);
    assert.deepEqual(live.current.blocklist, ["::1"]);
    assert.ok(live.status().appliedAt > 0);
  });
});
