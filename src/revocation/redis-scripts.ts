/**
 * The Redis store's Lua scripts. Each runs atomically on one shard: every key it touches
 * shares one hash tag, and it declares a key of that tag so that a Cluster routes it to the
 * slot's master. Scripts that must not need write access for a verifier (the check) derive
 * the keys they read from the tag instead of declaring them (see the ACL notes in
 * docs/stores.md).
 */
import type { Cluster, Redis } from 'ioredis'

/**
 * Agent ids per revocation script in {@link RedisReplayRevocationStore.revokeAgents}: about
 * 1,500 Redis calls inside one script (well under a millisecond of the server's single
 * thread, so checks of other tokens wait at most that long behind it), and at most ~256 KB
 * of arguments (ids are at most 512 chars).
 */
export const REVOKE_AGENTS_CHUNK = 500

// KEYS[1]: the jti's single-use marker. ARGV: tag, consume ('1'|'0'), marker ttl ms, iat,
// attempt nonce, number of token ids n, then n token ids (the jti first, then its
// ancestors), then agents. Revocation keys are derived from the tag: same hash slot as
// KEYS[1] by construction. The marker holds the nonce of the attempt that consumed it: a
// retry carrying the same nonce (the same store instance, after an attempt whose reply was
// lost) is that attempt, not a replay.
const CHECK_LUA = `
local tag = ARGV[1]
local n = tonumber(ARGV[6])
local tk = {}
for i = 1, n do tk[i] = tag .. ':t:' .. ARGV[6 + i] end
if redis.call('EXISTS', unpack(tk)) > 0 then return 1 end
local na = #ARGV - 6 - n
if na > 0 then
  local ak = {}
  for i = 1, na do ak[i] = tag .. ':a:' .. ARGV[6 + n + i] end
  local at = redis.call('MGET', unpack(ak))
  local iat = tonumber(ARGV[4])
  for i = 1, na do
    local v = at[i]
    if v and iat <= tonumber(v) then return 2 end
  end
end
if ARGV[2] == '1' then
  if not redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[3], 'NX') then
    if redis.call('GET', KEYS[1]) ~= ARGV[5] then return 3 end
  end
end
return 0
`

// KEYS[1]: revoked-token key. ARGV[1]: ttl ms. Never shortens an existing revocation.
const REVOKE_TOKEN_LUA = `
local t = redis.call('PTTL', KEYS[1])
if t == -1 then return 0 end
if t < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 0
`

// KEYS[1]: revoked-agent key. ARGV[1]: revoked-at, epoch seconds. ARGV[2]: keep ms.
// Keeps the latest revocation time and the longest expiry.
const REVOKE_AGENT_LUA = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1') or -1
local at = tonumber(ARGV[1])
if cur > at then at = cur end
local keep = tonumber(ARGV[2])
local t = redis.call('PTTL', KEYS[1])
if t == -1 then
  redis.call('SET', KEYS[1], string.format('%d', at), 'KEEPTTL')
  return 0
end
if t > keep then keep = t end
redis.call('SET', KEYS[1], string.format('%d', at), 'PX', keep)
return 0
`

// KEYS[1]: the first agent's revoked-agent key (routing only: every key written is derived
// from the tag, so shares its slot). ARGV: tag, revoked-at (epoch seconds), keep ms, then the
// agent ids. REVOKE_AGENT_LUA for each id, in one step: a quarantine of a large lineage is a
// few hundred script calls, not one call per descendant.
const REVOKE_AGENTS_LUA = `
local tag = ARGV[1]
local at0 = tonumber(ARGV[2])
local keep0 = tonumber(ARGV[3])
for i = 4, #ARGV do
  local k = tag .. ':a:' .. ARGV[i]
  local cur = tonumber(redis.call('GET', k) or '-1') or -1
  local at = at0
  if cur > at then at = cur end
  local t = redis.call('PTTL', k)
  if t == -1 then
    redis.call('SET', k, string.format('%d', at), 'KEEPTTL')
  else
    local keep = keep0
    if t > keep then keep = t end
    redis.call('SET', k, string.format('%d', at), 'PX', keep)
  end
end
return 0
`

// KEYS[1]: revoked-agent key on shard 0. ARGV[1]: keep ms. Revokes up to the server's clock
// (TIME), or past the previous revocation: tokens minted after it are dated one second later
// (its minimum iat), and they must die too. Returns the time used; a quarantine stays.
const REVOKE_AGENT_NOW_LUA = `
local now = tonumber(redis.call('TIME')[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1') or -1
local at = now
if cur >= ${2 ** 40} then at = cur elseif cur + 1 > at then at = cur + 1 end
local keep = tonumber(ARGV[1])
local t = redis.call('PTTL', KEYS[1])
if t == -1 then
  redis.call('SET', KEYS[1], string.format('%d', at), 'KEEPTTL')
  return at
end
if t > keep then keep = t end
redis.call('SET', KEYS[1], string.format('%d', at), 'PX', keep)
return at
`

// KEYS[1]: the trust-change counter of shard 0 (routing only: every key read shares its
// tag). ARGV: tag, then the agent ids. Read-only. Returns the server's clock (TIME, epoch
// seconds), then each agent's revocation time, then each one's stored level ('' for none).
const TRUST_STATES_LUA = `
local tag = ARGV[1]
local n = #ARGV - 1
local ak, lk = {}, {}
for i = 1, n do
  ak[i] = tag .. ':a:' .. ARGV[1 + i]
  lk[i] = tag .. ':tc:lv:' .. ARGV[1 + i]
end
local out = {redis.call('TIME')[1]}
if n == 0 then return out end
local a = redis.call('MGET', unpack(ak))
local l = redis.call('MGET', unpack(lk))
for i = 1, n do out[#out + 1] = a[i] or '' end
for i = 1, n do out[#out + 1] = l[i] or '' end
return out
`

// Lua shared by the lineage scripts. `retire(ag, tag, id, keep)` retires a spawned agent and,
// breadth first through the children sets, every descendant: each record is deleted, each id
// quarantined for at least `keep` ms (every token dies, the id stays taken), and the parent's
// child slot is freed. Returns the ids retired, the agent first; none when it is not
// registered (never spawned, or already retired). `idle(tag, id)`: registered with idle
// retirement and not seen within its idle time (its activity key expired).
const LINEAGE_FNS = `
local function retire(ag, tag, id0, keep)
  local rec = redis.call('HGET', ag, id0)
  if not rec then return {} end
  local out = {id0}
  local i = 1
  while i <= #out do
    local id = out[i]
    local kk = tag .. ':kids:' .. id
    local kids = redis.call('SMEMBERS', kk)
    for j = 1, #kids do
      if redis.call('HEXISTS', ag, kids[j]) == 1 then out[#out + 1] = kids[j] end
    end
    redis.call('DEL', kk, tag .. ':ch:' .. id, tag .. ':seen:' .. id)
    redis.call('HDEL', ag, id)
    local ak = tag .. ':a:' .. id
    local t = redis.call('PTTL', ak)
    if t ~= -1 then
      local k = keep
      if t > k then k = t end
      redis.call('SET', ak, '${2 ** 40}', 'PX', k)
    else
      redis.call('SET', ak, '${2 ** 40}', 'KEEPTTL')
    end
    i = i + 1
  end
  local ok, parsed = pcall(cjson.decode, rec)
  local parent = ok and type(parsed) == 'table' and type(parsed.ancestors) == 'table' and parsed.ancestors[1]
  if type(parent) == 'string' then
    local ck = tag .. ':ch:' .. parent
    if tonumber(redis.call('GET', ck) or '0') > 1 then redis.call('DECR', ck) else redis.call('DEL', ck) end
    redis.call('SREM', tag .. ':kids:' .. parent, id0)
  end
  return out
end
local function idle(ag, tag, id)
  return redis.call('HEXISTS', ag, id) == 1 and redis.call('EXISTS', tag .. ':seen:' .. id) == 0
end
`

// KEYS[1]: the spawned-agents hash. ARGV: tag, id, record JSON, max children, idle ms (0:
// no idle retirement), tombstone keep ms, then the ancestors, parent first. Refuses an
// existing id, a quarantined (or retired) id, a quarantined ancestor, a full parent (after
// retiring the parent's idle children, when idle retirement is on); records the child under
// its parent's children set. Returns the verdict, then the ids retired as idle.
const REGISTER_LUA = `${LINEAGE_FNS}
local tag = ARGV[1]
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return {1} end
local own = redis.call('GET', tag .. ':a:' .. ARGV[2])
if own and tonumber(own) >= ${2 ** 40} then return {1} end
local ak = {}
for i = 7, #ARGV do ak[#ak + 1] = tag .. ':a:' .. ARGV[i] end
local at = redis.call('MGET', unpack(ak))
for i = 1, #ak do
  local v = at[i]
  if v and tonumber(v) >= ${2 ** 40} then return {2} end
end
local parent = ARGV[7]
local ck = tag .. ':ch:' .. parent
local idleMs = tonumber(ARGV[5])
local res = {0}
if idleMs > 0 and tonumber(redis.call('GET', ck) or '0') >= tonumber(ARGV[4]) then
  local kids = redis.call('SMEMBERS', tag .. ':kids:' .. parent)
  for j = 1, #kids do
    if idle(KEYS[1], tag, kids[j]) then
      local gone = retire(KEYS[1], tag, kids[j], tonumber(ARGV[6]))
      for g = 1, #gone do res[#res + 1] = gone[g] end
    end
  end
end
if tonumber(redis.call('GET', ck) or '0') >= tonumber(ARGV[4]) then res[1] = 3 return res end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('INCR', ck)
redis.call('SADD', tag .. ':kids:' .. parent, ARGV[2])
if idleMs > 0 then redis.call('SET', tag .. ':seen:' .. ARGV[2], '1', 'PX', idleMs) end
return res
`

// KEYS[1]: the spawned-agents hash. ARGV: tag, id, tombstone keep ms. See retire() above.
const RETIRE_LUA = `${LINEAGE_FNS}
return retire(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]))
`

// KEYS[1]: the spawned-agents hash. ARGV: tag, mode ('touch' | 'sweep'), idle ms, tombstone
// keep ms, then agent ids. Each id not registered (a manifest agent) is skipped; each one
// idle is retired with its descendants; with 'touch', every other one's idle time restarts.
// Returns the ids retired.
const IDLE_LUA = `${LINEAGE_FNS}
local tag = ARGV[1]
local out = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  if idle(KEYS[1], tag, id) then
    local gone = retire(KEYS[1], tag, id, tonumber(ARGV[4]))
    for g = 1, #gone do out[#out + 1] = gone[g] end
  elseif ARGV[2] == 'touch' and redis.call('HEXISTS', KEYS[1], id) == 1 then
    redis.call('SET', tag .. ':seen:' .. id, '1', 'PX', ARGV[3])
  end
end
return out
`
/** The Lua source of the check, for benchmarks and operators who pre-load scripts. */
export const CHECK_SCRIPT: string = CHECK_LUA
/** The Lua source of the read a mint makes (quarantines, levels, revocation times, `TIME`), for benchmarks. */
export const TRUST_STATES_SCRIPT: string = TRUST_STATES_LUA

// Names under which the scripts are defined on the client (versioned: a changed script gets a new name).
export const CMD_CHECK = 'agentTrustCheckV2'
export const CMD_REVOKE_TOKEN = 'agentTrustRevokeTokenV1'
export const CMD_REVOKE_AGENT = 'agentTrustRevokeAgentV1'
export const CMD_REVOKE_AGENTS = 'agentTrustRevokeAgentsV1'
export const CMD_REGISTER = 'agentTrustRegisterAgentV3'
export const CMD_RETIRE = 'agentTrustRetireAgentV2'
export const CMD_IDLE = 'agentTrustIdleAgentsV1'
export const CMD_REVOKE_AGENT_NOW = 'agentTrustRevokeAgentNowV1'
export const CMD_TRUST_STATES = 'agentTrustTrustStatesV1'

/**
 * Define every script on a client. defineCommand: EVALSHA by SHA1, EVAL (which loads the
 * script) on NOSCRIPT or on a new connection.
 */
export function defineStoreScripts(c: Redis | Cluster): void {
  c.defineCommand(CMD_CHECK, { lua: CHECK_LUA })
  c.defineCommand(CMD_REVOKE_TOKEN, { lua: REVOKE_TOKEN_LUA, numberOfKeys: 1 })
  c.defineCommand(CMD_REVOKE_AGENT, { lua: REVOKE_AGENT_LUA, numberOfKeys: 1 })
  c.defineCommand(CMD_REVOKE_AGENTS, { lua: REVOKE_AGENTS_LUA, numberOfKeys: 1 })
  c.defineCommand(CMD_REGISTER, { lua: REGISTER_LUA, numberOfKeys: 1 })
  c.defineCommand(CMD_RETIRE, { lua: RETIRE_LUA, numberOfKeys: 1 })
  c.defineCommand(CMD_IDLE, { lua: IDLE_LUA, numberOfKeys: 1 })
  c.defineCommand(CMD_REVOKE_AGENT_NOW, { lua: REVOKE_AGENT_NOW_LUA, numberOfKeys: 1 })
  c.defineCommand(CMD_TRUST_STATES, { lua: TRUST_STATES_LUA, numberOfKeys: 1 })
}
