#!/usr/bin/env bash
# Wait until every vLLM server answers GET /health, or fail naming the ones that do not.
#   launch/wait_for_servers.sh http://127.0.0.1:8000 http://127.0.0.1:8001
#   WAIT_S=3600 launch/wait_for_servers.sh http://node0:8000   # default 1800 s (a 7B model loads in minutes)
# Servers started in the background from the same shell: list their pids in WAIT_PIDS to fail at
# once when one exits during start-up instead of waiting out WAIT_S.
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: launch/wait_for_servers.sh URL [URL...]" >&2; exit 2; }
deadline=$(( SECONDS + ${WAIT_S:-1800} ))
for url in "$@"; do
  url=${url%/}; url=${url%/v1}
  until curl -sf -o /dev/null --max-time 10 "$url/health"; do
    for pid in ${WAIT_PIDS:-}; do
      kill -0 "$pid" 2>/dev/null || { echo "wait_for_servers: server process $pid exited before $url was up" >&2; exit 1; }
    done
    if (( SECONDS >= deadline )); then
      echo "wait_for_servers: $url/health not answering after ${WAIT_S:-1800} s; start it with launch/vllm_server.sh MODEL PORT" >&2
      exit 1
    fi
    sleep 5
  done
  echo "wait_for_servers: $url is up"
done
