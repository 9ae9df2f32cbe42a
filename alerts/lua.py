"""Server-side scripts of the case store.

Why Lua and not client code: each script is one atomic step on the server, so an
alert is either wholly in the queue (case, history, grid stream, deadline, event)
or not at all, even when Redis is killed mid-burst; that is what makes a replay
from the spool exactly-once. It is also one round trip per alert, which is what
makes 2,000 alerts/s with a low p99 possible.

Every script starts with PRELUDE; ``ARGV[1]`` is always the key prefix.
"""

PRELUDE = r"""
local P = ARGV[1]
local CASE_ID = ''
local function k(...) return P .. ':' .. table.concat({...}, ':') end

-- append to a case's history; each entry carries the SHA-1 of the previous raw entry,
-- the case the SHA-1 of the last one, so an edited or deleted entry shows (verify_history)
local function append_history(cid, entry, case)
  local hk = k('case', cid, 'history')
  local last = redis.call('LINDEX', hk, -1)
  if last then entry.prev = redis.sha1hex(last) else entry.prev = '' end
  local raw = cjson.encode(entry)
  redis.call('RPUSH', hk, raw)
  case.history_head = redis.sha1hex(raw)
end

local function emit(kind, case_json, before)
  if before and before ~= '' then
    redis.call('XADD', k('events'), 'MAXLEN', '~', '10000', '*', 'type', kind, 'case', case_json, 'before', before)
  else
    redis.call('XADD', k('events'), 'MAXLEN', '~', '10000', '*', 'type', kind, 'case', case_json)
  end
end

local function police(kind, case, note)
  if case.kind == 'conflict' then
    redis.call('XADD', k('police'), 'MAXLEN', '~', '100000', '*', 'type', kind, 'case', case.id,
      'state', case.state, 'camera', case.camera_id, 'grid', case.grid_id, 'lat', tostring(case.lat),
      'lon', tostring(case.lon), 'ts', tostring(case.ts), 'count', tostring(case.count), 'note', note or '')
  end
end

-- the list indexes (CaseStore.list): every case by grid and camera, the open ones, each worker's;
-- a case's current fields decide what a list shows, so an index only has to hold every case it should
local function index(case, before)
  local cid = case.id
  if not before then
    redis.call('ZADD', k('cases'), case.ts, cid)
    redis.call('ZADD', k('cases', 'grid', case.grid_id), case.ts, cid)
    redis.call('ZADD', k('cases', 'camera', case.camera_id), case.ts, cid)
  end
  local was_open = before and before.state ~= 'closed'
  if case.state ~= 'closed' and not was_open then redis.call('ZADD', k('cases', 'open'), case.ts, cid)
  elseif case.state == 'closed' and was_open then redis.call('ZREM', k('cases', 'open'), cid) end
  local old_worker = before and before.worker
  if old_worker ~= case.worker then
    if type(old_worker) == 'string' then redis.call('ZREM', k('cases', 'worker', old_worker), cid) end
    if type(case.worker) == 'string' then redis.call('ZADD', k('cases', 'worker', case.worker), case.ts, cid) end
  end
end

local function pin(name, until_)
  if name and name ~= cjson.null and name ~= '' then
    redis.call('SADD', k('case', CASE_ID, 'evidence'), name)
    redis.call('SADD', k('evidence', 'cases', name), CASE_ID)  -- who may see the file: the readers of its cases
    redis.call('ZADD', k('evidence', 'keep'), until_, name)
  end
end
"""

# ARGV: prefix, alert json, cooldown ms, now, limit of the state "new" (s), incident key ttl (s)
# -> {case id, status, case json}; status: created | updated | ended | duplicate | absorbed | ignored
INGEST = PRELUDE + r"""
local a = cjson.decode(ARGV[2])
local cooldown, now, limit, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local ikey = k('incident', a.incident_id)
-- how long the place keeps pointing at its case: while its incident goes on (no end seen; a day at most, for an
-- incident whose worker died and whose camera nobody analyses since), then the cooldown from its end. A crowd that
-- stands for longer than the cooldown and changes worker on the way (a failover starts a new incident, the old one
-- never ends) stays one case; a new crowd after an incident's end and the cooldown is a new case.
local function dedupe_ms(phase)
  if phase == 'end' then return cooldown end
  return math.max(cooldown, 86400000)
end
local known = redis.call('HMGET', ikey, 'case', 'seq')
local cid = known[1]
if cid then
  if tonumber(known[2]) >= a.seq then return {cid, 'duplicate', ''} end
else
  local open = redis.call('GET', k('dedupe', a.camera_id, a.zone_id, a.kind))
  if open and redis.call('EXISTS', k('case', open)) == 1 then
    cid = open
  elseif a.phase == 'end' then
    return {'', 'ignored', ''}
  end
end

if cid then  -- news of a case that exists: its timeline grows, no new alert
  local raw = redis.call('GET', k('case', cid))
  if not raw then return {cid, 'ignored', ''} end
  redis.call('HSET', ikey, 'case', cid, 'seq', a.seq)
  redis.call('EXPIRE', ikey, ttl)
  local case = cjson.decode(raw)
  if case.state == 'closed' then return {cid, 'absorbed', raw} end
  if cooldown > 0 then redis.call('SET', k('dedupe', a.camera_id, a.zone_id, a.kind), cid, 'PX', dedupe_ms(a.phase)) end
  CASE_ID = cid
  local entry = {ts = now, actor = 'gridwatch', state = case.state, note = a.detail, count = a.count}
  local status = 'updated'
  if a.phase == 'end' then
    case.end_ts = a.ts
    entry.action = 'end'
    status = 'ended'
  else
    entry.action = 'update'
    case.updates = case.updates + 1
    if a.count > case.count then case.count = a.count end
    if a.score > case.score then case.score = a.score end
    if a.priority < case.priority then
      case.priority = a.priority
      case.level = a.level
      entry.priority = a.priority
    end
    case.end_ts = cjson.null
    if a.seq == 0 and a.incident_id ~= case.incident_id then case.incidents = (case.incidents or 1) + 1 end
    if a.snapshot ~= cjson.null then
      entry.snapshot = a.snapshot
      pin(a.snapshot, '+inf')
      if case.snapshot == cjson.null then case.snapshot = a.snapshot end
    end
  end
  case.updated_at = now
  case.version = case.version + 1
  append_history(cid, entry, case)
  local out = cjson.encode(case)
  redis.call('SET', k('case', cid), out)
  emit('case.updated', out, raw)
  return {cid, status, out}
end

-- a new case
cid = a.incident_id
CASE_ID = cid
local stream = k('grid', a.grid_id, 'q' .. a.priority)
if redis.call('SADD', k('queues'), stream) == 1 then
  redis.pcall('XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM')
end
local sid = redis.call('XADD', stream, '*', 'case', cid, 'kind', a.kind, 'camera', a.camera_id)
redis.call('XADD', k('grid', a.grid_id, 'cases'), 'MAXLEN', '~', '100000', '*', 'case', cid, 'kind', a.kind,
  'camera', a.camera_id, 'priority', tostring(a.priority))
local case = {id = cid, incident_id = a.incident_id, kind = a.kind, camera_id = a.camera_id,
  camera_name = a.camera_name, grid_id = a.grid_id, zone_id = a.zone_id, ts = a.ts, count = a.count,
  score = a.score, detail = a.detail, snapshot = a.snapshot, lat = a.lat, lon = a.lon, priority = a.priority,
  level = a.level, clip = cjson.null, state = 'new', verdict = cjson.null, worker = cjson.null,
  created_at = now, updated_at = now, state_since = now, updates = 0, incidents = 1, version = 1,
  escalations = 0, escalation_level = 0, dead_letter = false, end_ts = cjson.null, notes = 0,
  stream_id = sid, queue = stream}
append_history(cid, {ts = now, actor = 'gridwatch', action = 'create', state = 'new', note = a.detail,
  count = a.count, priority = a.priority, snapshot = a.snapshot}, case)
local out = cjson.encode(case)
redis.call('SET', k('case', cid), out)
index(case, nil)
if cooldown > 0 then redis.call('SET', k('dedupe', a.camera_id, a.zone_id, a.kind), cid, 'PX', dedupe_ms(a.phase)) end
redis.call('HSET', ikey, 'case', cid, 'seq', a.seq)
redis.call('EXPIRE', ikey, ttl)
redis.call('ZADD', k('deadlines'), now + limit, cid)
local zone = a.camera_id .. '|' .. a.zone_id .. '|' .. a.kind
redis.call('SADD', k('zones'), zone)
redis.call('HINCRBY', k('zone', zone), 'alerts', 1)
pin(a.snapshot, '+inf')
police('created', case, a.detail)
emit('case.created', out, nil)
return {cid, 'created', out}
"""

# ARGV: prefix, case id, expected version, case json (after), history entry json, event type,
#       deadline ('' keep | 'clear' | unix time), extra stream entries json
#       [[stream, {field: value}], ...], counters json [[key, field, n], ...], pins json [[name, until], ...],
#       police note or '' (no police entry)
# -> case json, or 'conflict' (someone changed the case meanwhile: read again), or 'missing'
COMMIT = PRELUDE + r"""
local cid = ARGV[2]
CASE_ID = cid
local raw = redis.call('GET', k('case', cid))
if not raw then return 'missing' end
local before = cjson.decode(raw)
if before.version ~= tonumber(ARGV[3]) then return 'conflict' end
local case = cjson.decode(ARGV[4])
append_history(cid, cjson.decode(ARGV[5]), case)
local out = cjson.encode(case)
redis.call('SET', k('case', cid), out)
index(case, before)
if ARGV[7] == 'clear' then redis.call('ZREM', k('deadlines'), cid)
elseif ARGV[7] ~= '' then redis.call('ZADD', k('deadlines'), tonumber(ARGV[7]), cid) end
for _, x in ipairs(cjson.decode(ARGV[8])) do
  local args = {'XADD', x[1], 'MAXLEN', '~', '100000', '*'}
  for f, v in pairs(x[2]) do table.insert(args, f); table.insert(args, tostring(v)) end
  redis.call(unpack(args))
end
for _, c in ipairs(cjson.decode(ARGV[9])) do redis.call('HINCRBY', c[1], c[2], c[3]) end
for _, x in ipairs(cjson.decode(ARGV[10])) do pin(x[1], x[2]) end
if ARGV[11] ~= '' then police(case.state, case, ARGV[11]) end
emit(ARGV[6], out, raw)
return out
"""

# ARGV: prefix, case id, ... -> number of cases indexed (cases written before the list indexes existed)
REINDEX = PRELUDE + r"""
local n = 0
for i = 2, #ARGV do
  local raw = redis.call('GET', k('case', ARGV[i]))
  if raw then index(cjson.decode(raw), nil) n = n + 1 end
end
return n
"""

# ARGV: prefix, case id, now, limits json {state: seconds}, repeat
# -> case json when escalated, else ''
ESCALATE = PRELUDE + r"""
local cid, now, limits, rep = ARGV[2], tonumber(ARGV[3]), cjson.decode(ARGV[4]), tonumber(ARGV[5])
CASE_ID = cid
local due = redis.call('ZSCORE', k('deadlines'), cid)
if not due or tonumber(due) > now then return '' end
local raw = redis.call('GET', k('case', cid))
local case = raw and cjson.decode(raw)
local limit = case and limits[case.state]
if not limit then redis.call('ZREM', k('deadlines'), cid) return '' end
case.escalation_level = (case.escalation_level or 0) + 1
case.escalations = (case.escalations or 0) + 1
case.updated_at = now
case.version = case.version + 1
local why = {new = 'not acknowledged', acknowledged = 'no worker dispatched', dispatched = 'worker not on site',
  on_site = 'not resolved', resolved = 'not closed'}
local note = string.format('%s within %g s (escalation %d)', why[case.state] or case.state,
  math.floor(limit * 1000 + 0.5) / 1000, case.escalation_level)
append_history(cid, {ts = now, actor = 'gridwatch', action = 'escalate', state = case.state, note = note,
  level = case.escalation_level}, case)
local out = cjson.encode(case)
redis.call('SET', k('case', cid), out)
if case.escalation_level < rep then redis.call('ZADD', k('deadlines'), now + limit, cid)
else redis.call('ZREM', k('deadlines'), cid) end
redis.call('XADD', k('grid', case.grid_id, 'supervisor'), 'MAXLEN', '~', '100000', '*', 'case', cid,
  'state', case.state, 'level', tostring(case.escalation_level), 'note', note, 'ts', tostring(now))
emit('case.escalated', out, raw)
return out
"""

# ARGV: prefix, incident id, kind of evidence ('clip'), file name, now, keep until ('+inf' or unix time)
# -> {case id, status}; status: attached | duplicate | unknown
ATTACH = PRELUDE + r"""
local cid = redis.call('HGET', k('incident', ARGV[2]), 'case')
if not cid then return {'', 'unknown'} end
CASE_ID = cid
local raw = redis.call('GET', k('case', cid))
if not raw then return {cid, 'unknown'} end
if redis.call('SISMEMBER', k('case', cid, 'evidence'), ARGV[4]) == 1 then return {cid, 'duplicate'} end
local case = cjson.decode(raw)
local until_ = ARGV[6]
if case.state ~= 'closed' then until_ = '+inf' end
pin(ARGV[4], until_)
local entry = {ts = tonumber(ARGV[5]), actor = 'gridwatch', action = 'evidence', state = case.state,
  note = ARGV[3] .. ' ' .. ARGV[4]}
entry[ARGV[3]] = ARGV[4]
if case[ARGV[3]] == nil or case[ARGV[3]] == cjson.null then case[ARGV[3]] = ARGV[4] end
case.version = case.version + 1
case.updated_at = tonumber(ARGV[5])
append_history(cid, entry, case)
local out = cjson.encode(case)
redis.call('SET', k('case', cid), out)
emit('case.updated', out, raw)
return {cid, 'attached'}
"""
