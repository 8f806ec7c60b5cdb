//! The Lua scripts that make each multi-key write of the Redis store atomic (see the
//! module docs of `redis` for the keys they touch).

/// Lua shared by both scripts: `put_workflow(at)` writes the workflow whose arguments start
/// at `ARGV[at]`: `id, created_at (20 digits), status, has_spec ("1"/"0"), spec, n, n hash
/// arguments (field, value, ...)`; it returns the index of the argument after them.
pub(super) const LUA_PUT_WORKFLOW: &str = r#"
local function put_workflow(p, at, token)
  local id = ARGV[at]
  local wkey = p .. 'wf:' .. id
  local old = redis.call('HMGET', wkey, 'seq', 'member', 'token')
  if old[2] then
    redis.call('ZREM', p .. 'workflows', old[2])
    for _, status in ipairs(STATUSES) do
      redis.call('ZREM', p .. 'status:' .. status, old[2])
    end
  end
  local seq = tonumber(old[1])
  if not seq then
    seq = redis.call('INCR', p .. 'seq')
  end
  token = token or old[3]
  local member = ARGV[at + 1] .. ':' .. string.format('%020d', seq) .. ':' .. id
  local n = tonumber(ARGV[at + 5])
  redis.call('DEL', wkey)
  redis.call('HSET', wkey, 'seq', seq, 'member', member, unpack(ARGV, at + 6, at + 5 + n))
  if token then
    redis.call('HSET', wkey, 'token', token)
  end
  redis.call('ZADD', p .. 'workflows', 0, member)
  redis.call('ZADD', p .. 'status:' .. ARGV[at + 2], 0, member)
  if ARGV[at + 3] == '1' then
    redis.call('SET', p .. 'spec:' .. id, ARGV[at + 4])
  end
  return at + 6 + n
end
"#;

/// Lua shared by the scripts that write tasks: `push_tasks(hash, list, from)` writes the
/// `task id, task JSON` pairs of `ARGV[from..]` into `hash` and appends their ids to `list`,
/// [`CHUNK`](super::CHUNK) tasks per `HSET`/`RPUSH` (Lua's `unpack` has a stack limit). It
/// returns how many of the ids were new to the hash.
pub(super) const LUA_PUSH_TASKS: &str = r#"
local function push_tasks(hash, list, from)
  local chunk = tonumber(CHUNK) * 2
  local added = 0
  for i = from, #ARGV, chunk do
    local last = math.min(i + chunk - 1, #ARGV)
    added = added + redis.call('HSET', hash, unpack(ARGV, i, last))
    local ids = {}
    for j = i, last, 2 do
      ids[#ids + 1] = ARGV[j]
    end
    redis.call('RPUSH', list, unpack(ids))
  end
  return added
end
"#;

/// `create_workflow` and `create_workflow_once`: `ARGV = prefix, token, idempotency key
/// ('' for none), fingerprint, staged count, <workflow as for put_workflow>, then task id,
/// task JSON, ...`. With a staged count above 0 the tasks are not in `ARGV` but in the
/// staging keys of `token` (written by [`LUA_STAGE`]); they become the workflow's keys
/// (`RENAME`) if the workflow is created, and are deleted otherwise.
/// Returns `{code, workflow id}`: 0 when created (or created before with the same token),
/// 1 when the workflow exists, 2 when the key is kept with the same fingerprint (its
/// workflow's id), 3 when it is kept with another fingerprint, 4 when the staging keys do
/// not hold the staged count of tasks (they expired; nothing is written).
pub(super) const LUA_CREATE: &str = r#"
local p, token, ikey, fp, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[6]
local staged = tonumber(ARGV[5])
local stage_tasks, stage_order = p .. 'stagetasks:' .. token, p .. 'stageorder:' .. token
local function refuse(code, wid)
  if staged > 0 then
    redis.call('DEL', stage_tasks, stage_order)
  end
  return { code, wid }
end
local wkey = p .. 'wf:' .. id
if ikey ~= '' then
  local kept = redis.call('HMGET', p .. 'idem:' .. ikey, 'workflow', 'fingerprint')
  if kept[1] then
    if redis.call('HGET', p .. 'wf:' .. kept[1], 'token') == token then
      return refuse(0, kept[1])
    end
    if kept[2] == fp then
      return refuse(2, kept[1])
    end
    return refuse(3, kept[1])
  end
end
if redis.call('EXISTS', wkey) == 1 then
  if redis.call('HGET', wkey, 'token') == token then
    return refuse(0, id)
  end
  return refuse(1, id)
end
if staged > 0 and (redis.call('HLEN', stage_tasks) ~= staged
    or redis.call('LLEN', stage_order) ~= staged) then
  return refuse(4, id)
end
-- Leftovers of a workflow without a record belong to nobody.
local tasks, order = p .. 'tasks:' .. id, p .. 'order:' .. id
redis.call('DEL', p .. 'spec:' .. id, tasks, order)
local first = put_workflow(p, 6, token)
if staged > 0 then
  redis.call('RENAME', stage_tasks, tasks)
  redis.call('RENAME', stage_order, order)
  redis.call('PERSIST', tasks)
  redis.call('PERSIST', order)
else
  push_tasks(tasks, order, first)
end
if ikey ~= '' then
  redis.call('HSET', p .. 'idem:' .. ikey, 'workflow', id, 'fingerprint', fp)
end
return { 0, id }
"#;

/// Stages one chunk of a big workflow's tasks before [`LUA_CREATE`] takes them:
/// `ARGV = prefix, token, time to live (ms), then task id, task JSON, ...`. The staging keys
/// `{p}stagetasks:{token}` (hash) and `{p}stageorder:{token}` (list) expire unless a chunk
/// or the create script comes in time, so a creator that dies midway leaves nothing behind
/// for long. A chunk sent twice (a retry after a lost reply) is written once: the script
/// runs whole or not at all, and the ids of a creation are distinct, so its ids are either
/// all new or all there. Returns the number of tasks staged so far.
pub(super) const LUA_STAGE: &str = r#"
local p, token, ttl = ARGV[1], ARGV[2], ARGV[3]
local stage_tasks, stage_order = p .. 'stagetasks:' .. token, p .. 'stageorder:' .. token
if redis.call('HEXISTS', stage_tasks, ARGV[4]) == 0 then
  push_tasks(stage_tasks, stage_order, 4)
end
redis.call('PEXPIRE', stage_tasks, ttl)
redis.call('PEXPIRE', stage_order, ttl)
return redis.call('HLEN', stage_tasks)
"#;

/// `apply`: `ARGV = prefix, workflow count, <workflows as for put_workflow>, then
/// workflow id, task id, task JSON, ...`. Returns `{}` when applied, `{workflow id}` when a
/// task's workflow is neither stored nor in the batch (then nothing is written).
pub(super) const LUA_APPLY: &str = r#"
local p = ARGV[1]
local starts, batch = {}, {}
local at = 3
for w = 1, tonumber(ARGV[2]) do
  starts[w] = at
  batch[ARGV[at]] = true
  at = at + 6 + tonumber(ARGV[at + 5])
end
local first_task = at
for t = first_task, #ARGV, 3 do
  local wid = ARGV[t]
  if not batch[wid] then
    if redis.call('EXISTS', p .. 'wf:' .. wid) == 0 then
      return { wid }
    end
    batch[wid] = true
  end
end
for _, start in ipairs(starts) do
  put_workflow(p, start, nil)
end
for t = first_task, #ARGV, 3 do
  if redis.call('HSET', p .. 'tasks:' .. ARGV[t], ARGV[t + 1], ARGV[t + 2]) == 1 then
    redis.call('RPUSH', p .. 'order:' .. ARGV[t], ARGV[t + 1])
  end
end
return {}
"#;

/// Takes `KEYS[1]` (a workflow's owner) for `ARGV[1]` for `ARGV[2]` ms when it is free or
/// already theirs; 1 when held afterwards.
pub(super) const LUA_CLAIM: &str = r#"
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// Frees `KEYS[1]` if `ARGV[1]` holds it.
pub(super) const LUA_RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;
