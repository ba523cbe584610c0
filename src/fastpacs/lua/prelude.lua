-- fastpacs's Lua prelude: runs once in every Lua state, before the configured scripts.
--
-- It receives the Python functions it needs and the settings, and sets up:
--   * the sandbox (unless the configuration opts out): no io, os (except its
--     clock and date functions), package, require, dofile, loadfile or debug,
--     and load() of source text only (never of bytecode);
--   * the time limit: a count hook asks Python every few thousand instructions
--     whether the running job is over its time, and raises an error the script
--     cannot catch (pcall, xpcall and coroutine.resume raise it again);
--   * print(), whose lines Python collects (arguments joined by ", ", as Orthanc);
--   * the part of Orthanc's Lua API written in Lua: PrintRecursive and the job
--     commands of the callbacks (SendToModality, SendToPeer, Delete,
--     ModifyInstance, CallSystem), which add operations to _job.
-- It returns the helpers Python calls: run(f, ...) and compile(source).

local python, settings = ...
local expired, emit = python.expired, python.emit
local sethook = debug.sethook
local raw_pcall, raw_xpcall, raw_error, raw_load = pcall, xpcall, error, load
local coroutine_create, coroutine_wrap, coroutine_resume = coroutine.create, coroutine.wrap, coroutine.resume
local select, tostring, type, insert = select, tostring, type, table.insert

local TIME_LIMIT = setmetatable({}, { __tostring = function() return 'time limit exceeded' end })

local function check_time()
  if expired() then raw_error(TIME_LIMIT, 0) end
end

local function watch_time()
  sethook(check_time, '', settings.instructions_per_check)
end

-- After a caught error, raise it again if the time is over: a script cannot
-- escape the limit by catching its error.
local function unless_expired(ok, ...)
  if not ok then check_time() end
  return ok, ...
end

pcall = function(f, ...)
  return unless_expired(raw_pcall(f, ...))
end

xpcall = function(f, handler, ...)
  local function guarded_handler(problem)
    if problem == TIME_LIMIT then return problem end
    return handler(problem)
  end
  return unless_expired(raw_xpcall(f, guarded_handler, ...))
end

-- Hooks belong to a coroutine: every new one gets the time check too.
coroutine.create = function(f)
  if type(f) ~= 'function' then return coroutine_create(f) end
  return coroutine_create(function(...) watch_time() return f(...) end)
end

coroutine.wrap = function(f)
  if type(f) ~= 'function' then return coroutine_wrap(f) end
  return coroutine_wrap(function(...) watch_time() return f(...) end)
end

coroutine.resume = function(co, ...)
  return unless_expired(coroutine_resume(co, ...))
end

print = function(...)
  local line = ''
  for position = 1, select('#', ...) do
    local text = tostring((select(position, ...)))
    if line == '' then line = text else line = line .. ', ' .. text end
  end
  emit(line)
end

if not settings.unsafe then
  local os_library = os
  os = {
    clock = os_library.clock,
    date = os_library.date,
    difftime = os_library.difftime,
    time = os_library.time,
  }
  io, package, require, dofile, loadfile, debug = nil, nil, nil, nil, nil, nil
  load = function(chunk, name, _, env)
    return raw_load(chunk, name, 't', env)
  end
end
_G.python = nil  -- lupa's bridge to Python: never reachable from scripts

-- PrintRecursive(value [, limit [, prefix]]): prints a value and, for a
-- table, each entry on its own line prefixed by its keys ("\t[key]" per
-- level); at most `limit` (default 100) values are printed.
function PrintRecursive(value, limit, prefix)
  limit = limit or 100
  prefix = prefix or ''
  if limit < 1 then
    print('ERROR: Item limit reached.')
    return limit - 1
  end
  if type(value) ~= 'table' then
    print(prefix, type(value), value)
    return limit - 1
  end
  print(prefix, 'table')
  for key, item in pairs(value) do
    limit = PrintRecursive(item, limit, prefix .. '\t[' .. tostring(key) .. ']')
    if limit < 0 then break end
  end
  return limit
end

-- The job commands: a callback lists operations in _job; once it returns,
-- fastpacs runs them in a job. A command given '' as resource works on the
-- output of the command before it (the modified instance, after ModifyInstance).
function _InitializeJob()
  _job = {}
end

function _AccessJob()
  return _job
end

function SendToModality(resourceId, modality, localAet)
  if resourceId == nil then error('Cannot send a nonexistent resource') end
  insert(_job, { Operation = 'store-scu', Resource = resourceId, Modality = modality, LocalAet = localAet })
  return resourceId
end

function SendToPeer(resourceId, peer)
  if resourceId == nil then error('Cannot send a nonexistent resource') end
  insert(_job, { Operation = 'store-peer', Resource = resourceId, Peer = peer })
  return resourceId
end

function Delete(resourceId)
  if resourceId == nil then error('Cannot delete a nonexistent resource') end
  insert(_job, { Operation = 'delete', Resource = resourceId })
  return nil  -- nothing is left to chain another command to
end

function ModifyResource(resourceId, replacements, removals, removePrivateTags)
  if resourceId == nil then error('Cannot modify a nonexistent resource') end
  if resourceId == '' then error('Cannot modify twice an resource') end
  insert(_job, {
    Operation = 'modify',
    Resource = resourceId,
    Replace = replacements,
    Remove = removals,
    RemovePrivateTags = removePrivateTags,
  })
  return ''
end

function ModifyInstance(resourceId, replacements, removals, removePrivateTags)
  return ModifyResource(resourceId, replacements, removals, removePrivateTags)
end

function CallSystem(resourceId, command, args)
  if resourceId == nil then error('Cannot execute a system call on a nonexistent resource') end
  if command == nil then error('No command was specified for system call') end
  insert(_job, { Operation = 'call-system', Resource = resourceId, Command = command, Arguments = args })
  return resourceId
end

_InitializeJob()

local function run(f, ...)
  watch_time()
  return raw_pcall(f, ...)
end

local function compile(source)
  return raw_load(source, 'line', 't')
end

return run, compile
