# shellcheck shell=bash
# Questions to the running stack: is it up, do the Queriers see every store, has the live data
# arrived. Sourced by up.sh.

stack_healthy() {
  [ -f "$STACK_DIR/env" ] || return 1
  for f in "$STACK_DIR"/pids/*.pid; do
    [ -e "$f" ] || return 1
    read -r pid started <"$f"
    [ "$(proc_start_time "$pid")" = "$started" ] || return 1
  done
  # shellcheck disable=SC1091
  (source "$STACK_DIR/env" && curl -fsS "$THANOS_HTTP/-/ready" >/dev/null)
}

instant_value() { # query-http-port promql time -> the first value, 0 if none
  curl -fsS "http://127.0.0.1:$1/api/v1/query" --data-urlencode "query=$2" \
    --data-urlencode "time=$3" --data-urlencode 'dedup=false' |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}

instances_answer() { # query-http-port time expected instance count
  [ "$(instant_value "$1" 'count(count by (cluster, replica) (kube_node_info))' "$2")" = "$3" ]
}

all_stores_answer() { # expected instance count
  instances_answer "$QUERY_HTTP_PORT" "$DATA_TO" "$1"
}

# The main Querier lists every kind of store: sidecars, a store gateway, a receiver; and the
# sidecars announce the backfilled history (on a cold cache, their Prometheus load its blocks
# after they started, and a sidecar refreshes its min time only every few seconds: until then
# the Querier would not ask it for the history, the store gateway alone would answer).
stores_listed() { # query-http-port sidecars
  curl -fsS "http://127.0.0.1:$1/api/v1/stores" | python3 -c '
import json, sys
d = json.load(sys.stdin)["data"]
ok = lambda k: [s for s in d.get(k) or [] if not s.get("lastError")]
history = [s for s in ok("sidecar") if s["minTime"] <= int(sys.argv[2]) * 1000]
sys.exit(0 if len(history) == int(sys.argv[1]) and ok("store") and ok("receive") else 1)' "$2" $((DATA_FROM + 3600))
}

live_answers() { # query-http-port selector: the live target's series are queryable
  [ "$(instant_value "$1" "count(kube_node_info{$2})" "$(date +%s)")" != 0 ]
}

mimir_answers() { # cluster
  curl -fsS -H "X-Scope-OrgID: $MIMIR_TENANT" \
    "http://127.0.0.1:$MIMIR_HTTP_PORT/prometheus/api/v1/query" \
    --data-urlencode "query=count(kube_node_info{cluster=\"$1\"})" |
    python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["data"]["result"] else 1)'
}
