-- SPDX-License-Identifier: MIT
-- wrk script for POST /v1/kkt/receipt: one fresh Idempotency-Key per request, so every request is a new
-- receipt and none is a replay. The key starts with random hex, as a POS's UUID would, so keys land all over
-- the key index (sequential keys would flatter the store); run id, thread and counter keep it unique.
-- Non-200 answers are counted; done() prints one line for run-intake.sh.

local run_id = os.getenv("KKT_BENCH_RUN") or tostring(os.time())
local threads = {}

local body = '{"pos_id":"bench-pos-1","type":"sale","items":[' ..
        '{"name":"Lens 1.6 AR","price":1234.50,"quantity":2,"total":2469.00,"vat":"vat22"},' ..
        '{"name":"Frame","price":4999.99,"quantity":1,"total":4999.99,"vat":"vat22"}],' ..
        '"payments":[{"type":"card","amount":7468.99}]}'

function setup(thread)
        thread:set("tid", #threads + 1)
        table.insert(threads, thread)
end

function init(args)
        math.randomseed(os.time() * 100 + tid)
        prefix = "-" .. run_id .. "-" .. tid .. "-"
        n = 0
        bad = 0
        headers = { ["Content-Type"] = "application/json" }
end

function request()
        n = n + 1
        headers["Idempotency-Key"] = string.format("%08x%08x", math.random(0, 0x7fffffff),
                                                   math.random(0, 0x7fffffff)) .. prefix .. n
        return wrk.format("POST", "/v1/kkt/receipt", headers, body)
end

function response(status, hdrs, resp_body)
        if status ~= 200 then
                bad = bad + 1
                if bad <= 3 then
                        io.stderr:write("HTTP " .. status .. ": " .. resp_body .. "\n")
                end
        end
end

function done(summary, latency, requests)
        local bad_total = 0
        for _, t in ipairs(threads) do
                bad_total = bad_total + t:get("bad")
        end
        -- One machine-readable line for run-intake.sh; latencies in microseconds.
        io.write(string.format("BENCH requests=%d duration_us=%d rps=%.0f p50_us=%d p99_us=%d non200=%d " ..
                               "socket_errors=%d\n",
                               summary.requests, summary.duration,
                               summary.requests / (summary.duration / 1e6),
                               latency:percentile(50), latency:percentile(99), bad_total,
                               summary.errors.connect + summary.errors.read + summary.errors.write +
                               summary.errors.timeout))
end
