-- wrk script for bench/run.sh (wrk 4.x, LuaJIT).
--
-- Request: GET by default. With WRK_BODY_FILE set, every request is a POST of
-- that file's content with Content-Type: application/json (the body is read
-- once per thread, at load time, so it costs nothing per request).
--
-- Report: done() prints ONE line "WRK_JSON {...}" with exact percentiles from
-- wrk's latency histogram (microseconds) and wrk's error counters:
--   connect/read/write/timeout = socket errors, status = responses >= 400.
-- The harness parses that line; wrk's own text summary is ignored.

local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local p = {}
  for _, q in ipairs({ 50, 90, 99, 99.9 }) do
    p[#p + 1] = string.format('"%s":%d', tostring(q), latency:percentile(q))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"max":%d,"mean":%.3f,"stdev":%.3f,"p":{%s}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(p, ",")))
end
