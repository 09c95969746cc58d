#!/usr/bin/env bash
# The README's promise, checked as a person would: `make up`, its curl lines, `make down`,
# and no process left behind. Run by `make smoke` (and CI after `make test`).
set -euo pipefail
cd "$(dirname "$0")/../.."
json() { .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)$1)"; }
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

make up
trap 'make down >/dev/null 2>&1 || true' EXIT

receipt=$(curl -sf -X POST http://127.0.0.1:8001/api/v1/opinions \
  -H 'content-type: application/json' \
  -d '{"channel":"online","station_id":"taiping-1","category_id":"utilities",
       "content":"横湖路一带连续三天停水，老人孩子用水困难","voter_phone":"13800138000"}')
code=$(json '["receipt_code"]' <<<"$receipt")
opinion_id=$(json '["opinion_id"]' <<<"$receipt")
echo "smoke: receipt $code for opinion $opinion_id"

curl -sf "http://127.0.0.1:8001/api/v1/receipts/$code" | grep -q '"receipt_code"' \
  || fail "receipt status"
token() {
  curl -sf -X POST http://127.0.0.1:8002/api/v1/auth/token -H 'content-type: application/json' \
    -d "{\"client_id\":\"$1\",\"client_secret\":\"minyi-dev-password\"}" | json '["access_token"]'
}
OP=$(token operator); DEPT=$(token dept-utilities)
case_id=""
for _ in $(seq 1 100); do
  if case_json=$(curl -sf -H "authorization: Bearer $OP" "http://127.0.0.1:8002/api/v1/cases?opinion_id=$opinion_id"); then
    case_id=$(json '["id"]' <<<"$case_json"); break
  fi
  sleep 0.2
done
[ -n "$case_id" ] || fail "no case for opinion $opinion_id"
[ "$(json '["department_id"]' <<<"$case_json")" = utilities ] || fail "department"
for _ in $(seq 1 100); do
  status=$(curl -sf -H "authorization: Bearer $OP" "http://127.0.0.1:8003/api/v1/cases/$case_id/deliveries" | json '[0]["status"]' 2>/dev/null || true)
  [ "$status" = sent ] && break
  sleep 0.2
done
[ "$status" = sent ] || fail "delivery not sent"
for _ in $(seq 1 100); do
  notified=$(curl -sf -H "authorization: Bearer $OP" "http://127.0.0.1:8004/api/v1/cases/$case_id" | json '["first_notified_at"]' 2>/dev/null || true)
  [ -n "$notified" ] && [ "$notified" != None ] && break
  sleep 0.2
done
[ -n "$notified" ] && [ "$notified" != None ] || fail "evaluation read model"
curl -sf -H "authorization: Bearer $DEPT" http://127.0.0.1:8002/api/v1/departments/utilities/queue \
  | grep -q "$code" || fail "queue"
bad=$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:8001/api/v1/opinions \
  -H 'content-type: application/json' \
  -d '{"channel":"online","station_id":"taiping-1","content":"路灯坏了","voter_phone":"12345"}')
[ "$bad" = 422 ] || fail "bad input answered $bad"

trap - EXIT
make down
sleep 1
left=$(pgrep -af "services\.(intake|routing|notification|evaluation) serve|kafka\.Kafka|\.stack/dev" \
  | grep -v defunct | grep -v pgrep || true)
[ -z "$left" ] || fail "processes left after make down: $left"
echo "smoke: README flow OK (case $case_id sent and evaluated); nothing left running"
