-- wrk script for tools/bench/bench_batch.sh: POSTs one fixed JSON body (the
-- same bytes as the `body` of each `llmring batch` input line) with
-- Content-Type: application/json. The body is read from the file named by the
-- environment variable WRK_BODY_FILE. No request() function is defined, so
-- wrk sends its pre-built request bytes (its fastest path).
local path = os.getenv("WRK_BODY_FILE")
if not path then
	error("WRK_BODY_FILE is not set")
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()
body = body:gsub("\n$", "")

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

-- One machine-readable line for the bench script, after wrk's own summary.
function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		"WRK_RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
		summary.requests, summary.duration, summary.bytes,
		e.connect, e.read, e.write, e.status, e.timeout))
end
