#!/usr/bin/env bash
# The demo network in tmux: one pane per node (its log), one standalone miner,
# one pane refreshing `node.py status` for every node.
#
#   ./tmux_demo.sh [start] [--detach]   start (attaches when run from a terminal)
#   ./tmux_demo.sh stop                 Ctrl-C every pane, then kill the session
#
# Environment: NODES (default 4), BASE_PORT (default 5000), DATASET (digits),
# OUT (default ./tmux-demo-out: genesis.json, node data dirs, logs).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
SESSION=${SESSION:-learningchain}
NODES=${NODES:-4}
BASE_PORT=${BASE_PORT:-5000}
DATASET=${DATASET:-digits}
OUT=${OUT:-$ROOT/tmux-demo-out}
PY=$ROOT/.venv/bin/python

if ! command -v tmux >/dev/null 2>&1; then
    echo "install tmux: apt-get install tmux (Debian/Ubuntu) or brew install tmux (macOS)" >&2
    exit 1
fi

stop() {
    if ! tmux has-session -t "$SESSION" 2>/dev/null; then
        echo "no tmux session '$SESSION' is running"
        return 0
    fi
    # Ctrl-C lets every node close its store cleanly; then the session goes.
    for pane in $(tmux list-panes -s -t "$SESSION" -F '#{pane_id}'); do
        tmux send-keys -t "$pane" C-c 2>/dev/null || true
    done
    for _ in $(seq 50); do
        busy=$(tmux list-panes -s -t "$SESSION" -F '#{pane_dead} #{pane_current_command}' 2>/dev/null \
               | grep -c -E '^0 (python|python3|tee)' || true)
        [ "$busy" = "0" ] && break
        sleep 0.1
    done
    tmux kill-session -t "$SESSION"
    echo "stopped tmux session '$SESSION'"
}

case "${1:-start}" in
    stop) stop; exit 0 ;;
    start|--detach) ;;
    *) echo "usage: $0 [start] [--detach] | stop" >&2; exit 2 ;;
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

rm -rf "$OUT/nodes" && mkdir -p "$OUT"
PARTS=$("$PY" -c 'import sys; from pathlib import Path; from learningchain.demo import partitions_for
print(partitions_for(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))' "$DATASET" "$NODES" "$OUT")
"$PY" node.py genesis --nodes "$NODES" --dataset "$DATASET" --out "$OUT/genesis.json" --force

url() { echo "http://127.0.0.1:$((BASE_PORT + $1))"; }
node_cmd() {
    local i=$1 peers="" delay=0
    if [ "$i" -gt 0 ]; then peers="--peers $(url 0)"; delay=2; fi
    echo "sleep $delay; $PY node.py run --data-dir $OUT/nodes/node$i --port $((BASE_PORT + i))" \
         "--dataset $PARTS/node$i.npz --genesis $OUT/genesis.json $peers 2>&1 | tee -i $OUT/node$i.log"
}

tmux new-session -d -s "$SESSION" -n network -x 200 -y 50 "$(node_cmd 0)"
tmux set-option -t "$SESSION" remain-on-exit on >/dev/null
for i in $(seq 1 $((NODES - 1))); do
    tmux split-window -t "$SESSION:network" "$(node_cmd "$i")"
    tmux select-layout -t "$SESSION:network" tiled >/dev/null
done
tmux split-window -t "$SESSION:network" "sleep 3; $PY -m miner --node $(url 0) --workers 1"
URLS=$(for i in $(seq 0 $((NODES - 1))); do url "$i"; done | tr '\n' ' ')
tmux split-window -t "$SESSION:network" "while true; do clear; for u in $URLS; do
    $PY node.py status --node \$u 2>&1 | head -7; echo; done; sleep 2; done"
tmux select-layout -t "$SESSION:network" tiled >/dev/null

echo "tmux session '$SESSION': $NODES nodes on $(url 0) .. $(url $((NODES - 1))), miner on $(url 0)"
echo "logs in $OUT/node*.log; inspect with: $PY node.py status --node $(url 0)"
echo "stop with: $0 stop"
if [ "$DETACH" = 0 ] && [ -t 1 ] && [ -z "${TMUX:-}" ]; then
    exec tmux attach -t "$SESSION"
fi
echo "attach with: tmux attach -t $SESSION"
