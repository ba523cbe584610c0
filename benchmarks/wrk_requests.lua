-- Drives wrk through a list of requests and reports a JSON summary.
--
-- wrk ... -s wrk_requests.lua URL -- REQUESTS_FILE
--
-- REQUESTS_FILE holds one request a line: METHOD, a tab, the path and, for
-- requests with a body, another tab and a JSON body. Each wrk thread goes
-- round the list from its own offset. At the end the script prints one line,
-- "WRK_SUMMARY {...}", that benchmarks/wrk.py reads.

local requests = {}
local position = 0
local threads = {}

function setup(thread)
  thread:set("offset", #threads * 7919)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
    if body == "" then
      requests[#requests + 1] = wrk.format(method, path)
    else
      requests[#requests + 1] = wrk.format(method, path, {["Content-Type"] = "application/json"}, body)
    end
  end
  position = offset or 0
end

function request()
  position = position + 1
  return requests[(position % #requests) + 1]
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'WRK_SUMMARY {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50.0), latency:percentile(99.0)))
end
