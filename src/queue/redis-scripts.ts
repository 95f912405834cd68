import { createHash } from "node:crypto";

/**
 * The Lua scripts of the Redis queue. Each runs atomically on one server and reads the clock with `TIME`
 * there, so leases on one server never depend on the callers' clocks. Layout under the queue key `K`:
 *
 *   K:tasks     HASH  id → payload (JSON task)
 *   K:due       ZSET  id → ms when it may be leased (waiting tasks)
 *   K:leased    ZSET  id → ms when the lease ends (a task is in exactly one of due / leased)
 *   K:attempts  HASH  id → times leased
 *   K:created   ZSET  id → createdAt of the task (oldest = replication lag)
 *   K:dead      HASH  id → JSON dead letter {raw, reason, attempts, failedAt}
 *   K:dead-at   ZSET  id → failedAt (lists dead letters oldest first)
 *   K:unreachable SET id of tasks given back for an unreachable target, until leased again
 */
export interface Script {
  name: string;
  lua: string;
  sha: string;
  keys: readonly Suffix[];
}

export type Suffix = "tasks" | "due" | "leased" | "attempts" | "created" | "dead" | "dead-at" | "unreachable";

const NOW = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

function script(name: string, keys: readonly Suffix[], lua: string): Script {
  const text = `${NOW}\n${lua}`;
  return { name, keys, lua: text, sha: createHash("sha1").update(text).digest("hex") };
}

/**
 * ARGV: id, payload, createdAt, delayMs, ... Adds each task unless this server already has it (a retried
 * push). The delay is 0 on the task's home server and the takeover grace on the others (see redis.ts).
 */
export const PUSH = script(
  "push",
  ["tasks", "due", "created"],
  `
local added = 0
for i = 1, #ARGV, 4 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[i + 3]), ARGV[i])
    redis.call('ZADD', KEYS[3], ARGV[i + 2], ARGV[i])
    added = added + 1
  end
end
return added`,
);

/**
 * ARGV: max, leaseMs. First makes expired leases due again (their holder died or stalled: another worker
 * takes them over), then leases up to max due tasks. Returns id, payload, attempts-before, ...
 */
export const LEASE = script(
  "lease",
  ["tasks", "due", "leased", "attempts", "unreachable"],
  `
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[2], now, id)
end
local until_ = now + tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    redis.call('ZADD', KEYS[3], until_, id)
    redis.call('SREM', KEYS[5], id)
    local n = redis.call('HINCRBY', KEYS[4], id, 1)
    out[#out + 1] = id
    out[#out + 1] = raw
    out[#out + 1] = n - 1
  else
    redis.call('HDEL', KEYS[4], id)
  end
end
return out`,
);

/** ARGV: leaseMs, id, ... Marks tasks leased elsewhere as leased here too, so no second worker takes them. */
export const CLAIM = script(
  "claim",
  ["due", "leased", "attempts", "unreachable"],
  `
local until_ = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('ZADD', KEYS[2], until_, id)
    redis.call('HINCRBY', KEYS[3], id, 1)
    redis.call('SREM', KEYS[4], id)
  elseif redis.call('ZSCORE', KEYS[2], id) then
    redis.call('ZADD', KEYS[2], until_, id)
  end
end
return 1`,
);

/** ARGV: id, ... Removes acknowledged tasks (a missing id is fine: acks are repeated on every server). */
export const ACK = script(
  "ack",
  ["tasks", "due", "leased", "attempts", "created", "unreachable"],
  `
local n = 0
for _, id in ipairs(ARGV) do
  n = n + redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
  redis.call('SREM', KEYS[6], id)
end
return n`,
);

/**
 * ARGV: id, delayMs, unreachable (1 or 0). Gives a task back, due again after the delay. A task given back
 * for an unreachable target was not really tried: the lease's attempt is taken back and the task is counted
 * in K:unreachable until it is leased again.
 */
export const RETRY = script(
  "retry",
  ["tasks", "due", "leased", "attempts", "unreachable"],
  `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
if ARGV[3] == '1' then
  if tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0') > 0 then redis.call('HINCRBY', KEYS[4], ARGV[1], -1) end
  redis.call('SADD', KEYS[5], ARGV[1])
else
  redis.call('SREM', KEYS[5], ARGV[1])
end
return 1`,
);

/**
 * ARGV: id, delayMs, ... Makes waiting tasks due after the delay (0 on a task's home server, the takeover grace
 * on the others) when that is sooner than their retry; a task not waiting (leased, gone) is left alone.
 */
export const EXPEDITE = script(
  "expedite",
  ["due"],
  `
local n = 0
for i = 1, #ARGV, 2 do
  local at = now + tonumber(ARGV[i + 1])
  local due = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if due and tonumber(due) > at then
    redis.call('ZADD', KEYS[1], at, ARGV[i])
    n = n + 1
  end
end
return n`,
);

/** ARGV: id, dead letter JSON, failedAt. Moves a task to the dead letters (only where it still exists). */
export const BURY = script(
  "bury",
  ["tasks", "due", "leased", "attempts", "created", "dead", "dead-at", "unreachable"],
  `
local id = ARGV[1]
if redis.call('HDEL', KEYS[1], id) == 0 then return 0 end
redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('HDEL', KEYS[4], id)
redis.call('ZREM', KEYS[5], id)
redis.call('HSET', KEYS[6], id, ARGV[2])
redis.call('ZADD', KEYS[7], ARGV[3], id)
redis.call('SREM', KEYS[8], id)
return 1`,
);

/** ARGV: id, ... Puts dead letters back as fresh tasks (attempts 0, due now). Returns the ids replayed. */
export const REPLAY = script(
  "replay",
  ["tasks", "due", "created", "dead", "dead-at"],
  `
local out = {}
for _, id in ipairs(ARGV) do
  local rec = redis.call('HGET', KEYS[4], id)
  if rec then
    local ok, d = pcall(cjson.decode, rec)
    if ok and type(d) == 'table' and type(d.raw) == 'string' then
      redis.call('HSET', KEYS[1], id, d.raw)
      redis.call('ZADD', KEYS[2], now, id)
      redis.call('ZADD', KEYS[3], now, id)
    end
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
    out[#out + 1] = id
  end
end
return out`,
);

/** Returns depth, leased now, oldest createdAt (or -1), dead letters, server time, due now, unreachable. */
export const STATS = script(
  "stats",
  ["tasks", "leased", "created", "dead", "due", "unreachable"],
  `
local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return { redis.call('HLEN', KEYS[1]), redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf'),
  oldest[2] or '-1', redis.call('HLEN', KEYS[4]), tostring(now), redis.call('ZCOUNT', KEYS[5], '-inf', now),
  redis.call('SCARD', KEYS[6]) }`,
);
