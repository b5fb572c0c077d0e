#!/usr/bin/env bash
# The demo network in tmux: one pane per node (its log), one standalone miner,
# one pane showing every node on one line (`./tmux_demo.sh status`, every 2 s).
#
#   ./tmux_demo.sh [start] [--detach]   start (attaches when run from a terminal)
#   ./tmux_demo.sh stop                 Ctrl-C every pane, wait until the node and
#                                       miner processes exit, then kill the session
#   ./tmux_demo.sh status               every node's one-line status (what the status pane shows)
#
# Environment: NODES (default 4), MINERS (default 2: the standalone miner on node 0,
# and nodes 1 .. MINERS-1 run `--mine`, so one miner dying does not stop the chain),
# BASE_PORT (default 5000), DATASET (digits), BLOCK_MS (genesis block interval, default 200:
# one machine; a round then waits about 10 s for a slow node), OUT (default ./tmux-demo-out:
# genesis.json, node data dirs, logs), SECURE_AGGREGATION (0; 1 = masked updates,
# docs/protocol.md section 14) and SA_THRESHOLD (default floor(2N/3)+1).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
SESSION=${SESSION:-learningchain}
NODES=${NODES:-4}
MINERS=${MINERS:-2}
BASE_PORT=${BASE_PORT:-5000}
DATASET=${DATASET:-digits}
BLOCK_MS=${BLOCK_MS:-200}
OUT=${OUT:-$ROOT/tmux-demo-out}
SECURE_AGGREGATION=${SECURE_AGGREGATION:-0}
SA_THRESHOLD=${SA_THRESHOLD:-}
PY=$ROOT/.venv/bin/python

url() { echo "http://127.0.0.1:$((BASE_PORT + $1))"; }
# `./tmux_demo.sh status`: one line per node (port, height, round, model metric,
# mempool, peers, hash rate), once; the status pane runs it every 2 s. Needs no tmux.
status_once() {
    local i tmp
    tmp=$(mktemp -d)
    for i in $(seq 0 $((NODES - 1))); do  # all at once, so the lines are of one moment
        ("$PY" node.py status --brief --node "$(url "$i")" >"$tmp/$i" 2>&1 || true) &
    done
    wait
    for i in $(seq 0 $((NODES - 1))); do cat "$tmp/$i"; done
    rm -rf "$tmp"
}
if [ "${1:-}" = status ]; then status_once; exit 0; fi

if ! command -v tmux >/dev/null 2>&1; then
    echo "install tmux: apt-get install tmux (Debian/Ubuntu) or brew install tmux (macOS)" >&2
    exit 1
fi

# The processes of the session: the nodes (by their data dirs) and the miner.
# The panes run shell pipelines (`node.py run ... | tee`), so the pane's
# command is the shell: look for the processes themselves, anchored at the
# interpreter (the tmux server's and the pane shells' command lines hold the
# same words).
re_escape() { printf '%s' "$1" | sed 's/[][\.*^$+?(){}|]/\\&/g'; }
session_pids() {
    local py
    py=$(re_escape "$PY")
    pgrep -f -- "^$py node\.py run --data-dir $(re_escape "$1")/nodes/node" || true
    pgrep -f -- "^$py -m miner --node $(re_escape "$2")( |\$)" || true
}

stop() {
    if ! tmux has-session -t "$SESSION" 2>/dev/null; then
        echo "no tmux session '$SESSION' is running"
        return 0
    fi
    # where this session's nodes live (set at start; OUT/BASE_PORT may differ now)
    local out miner_url pids
    out=$(tmux show-environment -t "$SESSION" LC_OUT 2>/dev/null | sed 's/^LC_OUT=//') || true
    miner_url=$(tmux show-environment -t "$SESSION" LC_HUB 2>/dev/null | sed 's/^LC_HUB=//') || true
    out=${out:-$OUT}
    miner_url=${miner_url:-http://127.0.0.1:$BASE_PORT}
    # Ctrl-C lets every node close its store cleanly (tee -i ignores it and ends
    # when the node does); then wait for the processes, 15 s at most.
    for pane in $(tmux list-panes -s -t "$SESSION" -F '#{pane_id}'); do
        tmux send-keys -t "$pane" C-c 2>/dev/null || true
    done
    local deadline=$((SECONDS + 15))
    pids=$(session_pids "$out" "$miner_url")
    while [ -n "$pids" ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
        pids=$(session_pids "$out" "$miner_url")
    done
    if [ -n "$pids" ]; then
        echo "still running after 15 s, sending SIGTERM: $(echo $pids)" >&2
        kill $pids 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while [ -n "$(session_pids "$out" "$miner_url")" ] && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
        pids=$(session_pids "$out" "$miner_url")
        [ -n "$pids" ] && { echo "SIGKILL: $(echo $pids)" >&2; kill -9 $pids 2>/dev/null || true; }
    fi
    tmux kill-session -t "$SESSION"
    echo "stopped tmux session '$SESSION'; no node or miner process of it is left"
}

# Every port BASE_PORT .. BASE_PORT+NODES-1 must be free on 127.0.0.1.
check_ports() {
    "$PY" - "$BASE_PORT" "$NODES" <<'PY'
import socket, sys
base, n = int(sys.argv[1]), int(sys.argv[2])
if base + n - 1 > 65535:
    sys.exit(f"BASE_PORT={base} with NODES={n} goes past port 65535")
for port in range(base, base + n):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            sys.exit(f"port {port} on 127.0.0.1 is taken (node {port - base} would listen there): "
                     f"stop what uses it or choose another BASE_PORT (now {base})")
PY
}

case "${1:-start}" in
    stop) stop; exit 0 ;;
    start|--detach) ;;
    *) echo "usage: $0 [start] [--detach] | stop | status" >&2; exit 2 ;;
esac
DETACH=0
for arg in "$@"; do [ "$arg" = "--detach" ] && DETACH=1; done

if [ ! -x "$PY" ]; then
    echo "no .venv yet: running 'make setup'"
    make setup
fi
if tmux has-session -t "$SESSION" 2>/dev/null; then
    echo "tmux session '$SESSION' already runs: attach with 'tmux attach -t $SESSION' or run '$0 stop'" >&2
    exit 1
fi

check_ports || exit 1
rm -rf "$OUT/nodes" && mkdir -p "$OUT"
PARTS=$("$PY" -c 'import sys; from pathlib import Path; from learningchain.cli.demo import partitions_for
print(partitions_for(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))' "$DATASET" "$NODES" "$OUT")
# the node keys first (created in the data dirs), so genesis allow-lists them
ALLOW=$(for i in $(seq 0 $((NODES - 1))); do printf '%s,' "$OUT/nodes/node$i"; done)
SA_FLAGS=()
if [ "$SECURE_AGGREGATION" = 1 ]; then
    SA_FLAGS=(--secure-aggregation)
    if [ -n "$SA_THRESHOLD" ]; then SA_FLAGS+=(--sa-threshold "$SA_THRESHOLD"); fi
elif [ "$SECURE_AGGREGATION" != 0 ]; then
    echo "SECURE_AGGREGATION must be 0 or 1, got '$SECURE_AGGREGATION'" >&2
    exit 1
fi
case "$BLOCK_MS" in ''|*[!0-9]*|0) echo "BLOCK_MS must be a positive integer (ms), got '$BLOCK_MS'" >&2; exit 1;; esac
"$PY" node.py genesis --nodes "$NODES" --dataset "$DATASET" --out "$OUT/genesis.json" --force \
    --block-ms "$BLOCK_MS" --round-timeout $(( (10000 + BLOCK_MS - 1) / BLOCK_MS )) \
    --allow-list "${ALLOW%,}" ${SA_FLAGS[@]+"${SA_FLAGS[@]}"}


# poll node 0 until it answers (the other nodes and the miner need it)
wait_hub() { echo "until $PY node.py status --node $(url 0) >/dev/null 2>&1; do sleep 0.3; done"; }
node_cmd() {
    local i=$1 peers="" wait=":" mine="" baseline=""
    if [ "$i" -gt 0 ]; then peers="--peers $(url 0)"; wait=$(wait_hub); fi
    # node 0's explorer (the URL printed) draws a local-only line, computed in its background
    if [ "$i" -eq 0 ]; then baseline="--local-baseline"; fi
    if [ "$i" -gt 0 ] && [ "$i" -lt "$MINERS" ]; then mine="--mine --workers 1"; fi
    echo "$wait; $PY node.py run --data-dir $OUT/nodes/node$i --port $((BASE_PORT + i))" \
         "--data $PARTS/node$i.npz --genesis $OUT/genesis.json $peers $mine $baseline 2>&1 | tee -i $OUT/node$i.log"
}

tmux new-session -d -s "$SESSION" -n network -x 200 -y 50 "$(node_cmd 0)"
tmux set-option -t "$SESSION" remain-on-exit on >/dev/null
tmux set-environment -t "$SESSION" LC_OUT "$OUT"
tmux set-environment -t "$SESSION" LC_HUB "$(url 0)"
for i in $(seq 1 $((NODES - 1))); do
    tmux split-window -t "$SESSION:network" "$(node_cmd "$i")"
    tmux select-layout -t "$SESSION:network" tiled >/dev/null
done
tmux split-window -t "$SESSION:network" "$(wait_hub); $PY -m miner --node $(url 0) --data-dir $OUT/nodes/node0 --workers 1"
tmux split-window -t "$SESSION:network" "while true; do
    s=\$(NODES=$NODES BASE_PORT=$BASE_PORT $ROOT/tmux_demo.sh status); clear; date +%T; printf '%s\\n' \"\$s\"; sleep 2; done"
tmux select-layout -t "$SESSION:network" tiled >/dev/null

echo "tmux session '$SESSION': $NODES nodes on $(url 0) .. $(url $((NODES - 1))), miner on $(url 0)" \
     "$([ "$MINERS" -gt 1 ] && echo "and nodes 1 .. $((MINERS - 1)) mining")"
echo "logs in $OUT/node*.log; inspect with: $PY node.py status --node $(url 0)"
echo "stop with: $0 stop"
if [ "$DETACH" = 0 ] && [ -t 1 ] && [ -z "${TMUX:-}" ]; then
    exec tmux attach -t "$SESSION"
fi
echo "attach with: tmux attach -t $SESSION"
