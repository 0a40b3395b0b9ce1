#!/usr/bin/env bash
# Hyperparameter search with NNI 3 for one method; the web UI listens on 127.0.0.1 only.
# Usage: bash scripts/nni/run.sh <method> [trials]      (methods: the folders next to this script)
# Starts scripts/nni/<method>/config.yml (trials overrides maxTrialNumber), prints the web UI URL and
# the experiment id, waits until every trial has finished, prints the trials with their final
# metric (best validation SG top-1), and stops the experiment on exit, error or Ctrl-C.
# Env: NNI_PORT (default: a free port), NNI_EXP_DIR (NNI's experiment working directory, default
#      Log/nni/experiments), NNI_TRIAL_ARGS (extra train.py flags appended to every trial, e.g.
#      "--data_dir D --epochs 2"), NNI_POLL_S (status poll interval, default 10), NNI_STOP_TIMEOUT_S
#      (how long `nnictl stop` may take on exit before the experiment's processes are killed by
#      scripts/nni/kill_experiment.py, default 60).
# Trial run directories: Log/nni/<experiment id>/<trial id> (under --output_dir).
#
# Why a preload: NNI 3.0's manager calls express's app.listen(port) without a host, i.e. on every
# interface, and offers no option to change it. NODE_OPTIONS=--require makes its Node process load
# a 10-line shim that adds host 127.0.0.1 to listen() calls; the script then checks the listening
# socket (/proc/net/tcp*) and refuses to go on if the UI is reachable from outside.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
METHOD=${1:?usage: scripts/nni/run.sh <method> [trials]}
TRIALS=${2:-}
CFG=$ROOT/scripts/nni/$METHOD/config.yml
if [ ! -f "$CFG" ]; then
  echo "no $CFG; methods: $(cd "$ROOT/scripts/nni" && ls -d */ | tr -d / | tr '\n' ' ')" >&2
  exit 2
fi
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$ROOT/.venv/bin/activate" ]; then
  . "$ROOT/.venv/bin/activate"  # trials run `python train.py`: this puts the venv's python first
fi
command -v nnictl >/dev/null || { echo "nnictl not found: pip install -r requirements.txt" >&2; exit 2; }
PORT=${NNI_PORT:-$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
EXP_DIR=$(mkdir -p "${NNI_EXP_DIR:-$ROOT/Log/nni/experiments}" && cd "${NNI_EXP_DIR:-$ROOT/Log/nni/experiments}" && pwd)
POLL=${NNI_POLL_S:-10}
STOP_TIMEOUT=${NNI_STOP_TIMEOUT_S:-60}
API=http://127.0.0.1:$PORT/api/v1/nni
TMP=$(mktemp -d)
EXP_ID=""

exp_id_from_log() {  # nnictl prints "Experiment ID: <id>" (with colour codes) once it created one
  [ -f "$TMP/create.log" ] && sed 's/\x1b\[[0-9;]*m//g' "$TMP/create.log" |
      sed -n 's/.*Experiment ID: *\([A-Za-z0-9]*\).*/\1/p' | head -n 1
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$EXP_ID" ] || EXP_ID=$(exp_id_from_log || true)
  if [ -n "$EXP_ID" ] && [ "$EXP_ID" != none ]; then
    echo "stopping experiment $EXP_ID ..."
    # nnictl stop can hang for minutes while a trial trains on a busy machine: bound it, then kill
    # the experiment's processes (manager, tuner, trials) by its id.
    if ! timeout "$STOP_TIMEOUT" nnictl stop "$EXP_ID" >/dev/null 2>&1; then
      echo "nnictl stop $EXP_ID failed or did not finish within ${STOP_TIMEOUT} s; killing its processes" >&2
      python "$ROOT/scripts/nni/kill_experiment.py" "$EXP_ID" >&2 ||
          echo "could not kill experiment $EXP_ID; check 'nnictl experiment list'" >&2
    fi
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The shim: every TCP listen() of the NNI manager gets host 127.0.0.1 (unix sockets untouched).
cat > "$TMP/localhost_only.js" <<'JS'
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args.length === 0 || typeof args[0] === 'function') args.unshift(0);
  if (typeof args[0] === 'number' || /^\d+$/.test(String(args[0]))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
  } else if (args[0] && typeof args[0] === 'object' && args[0].path === undefined && !args[0].host) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
delete process.env.NODE_OPTIONS;  // not for the trials and tuner started from here
JS

# The experiment config with absolute paths, this run's working directory, trial count and flags.
python - "$CFG" "$TMP/config.yml" "$EXP_DIR" "$TRIALS" "${NNI_TRIAL_ARGS:-}" <<'PY'
import sys
from pathlib import Path

import yaml

src, dst, exp_dir, trials, extra = sys.argv[1:6]
cfg = yaml.safe_load(Path(src).read_text())
base = Path(src).resolve().parent
cfg["searchSpaceFile"] = str((base / cfg["searchSpaceFile"]).resolve())
cfg["trialCodeDirectory"] = str((base / cfg.get("trialCodeDirectory", ".")).resolve())
cfg["experimentWorkingDirectory"] = exp_dir
if trials:
    cfg["maxTrialNumber"] = int(trials)
if extra.strip():
    cfg["trialCommand"] += " " + extra.strip()
Path(dst).write_text(yaml.safe_dump(cfg, sort_keys=False))
PY

# nnictl gives the manager ~3 s to answer; on a loaded machine Node can take longer to start, and
# nnictl then kills it before registering the experiment: retry that case (only that) twice.
for attempt in 1 2 3; do
  NODE_OPTIONS="--require $TMP/localhost_only.js" nnictl create --config "$TMP/config.yml" --port "$PORT" \
      > "$TMP/create.log" 2>&1 && break
  if [ "$attempt" -lt 3 ] && grep -q "check-status" "$TMP/create.log"; then
    echo "the NNI manager did not answer in time (busy machine?); retrying ($attempt/2)" >&2
    sleep 3
    continue
  fi
  cat "$TMP/create.log" >&2
  EXP_ID=none  # nothing was registered: the exit trap has nothing to stop
  exit 1
done
EXP_ID=$(exp_id_from_log)
[ -n "$EXP_ID" ] || { cat "$TMP/create.log" >&2; echo "no experiment id in nnictl's output" >&2; exit 1; }

# Refuse to run with the UI on a public interface (the shim did not apply).
python - "$PORT" <<'PY' || exit 1
import sys
from pathlib import Path

port = int(sys.argv[1])
loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
bad = []
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    if not Path(table).is_file():
        continue
    for line in Path(table).read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if state == "0A" and int(p, 16) == port and addr not in loopback:
            bad.append(addr)
if bad:
    sys.exit(f"the NNI web UI listens on a non-loopback address ({bad}); stopping it")
PY

echo "experiment id: $EXP_ID"
echo "web UI:        http://127.0.0.1:$PORT   (this machine only; from elsewhere: ssh -L $PORT:127.0.0.1:$PORT <host>)"
echo "NNI logs:      $EXP_DIR/$EXP_ID   trial run dirs: Log/nni/$EXP_ID/<trial id>"
echo "waiting for the trials (Ctrl-C stops the experiment) ..."

status=""
while :; do
  status=$(python -c 'import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/check-status", timeout=10))["status"])' "$API" \
      2>/dev/null || echo UNREACHABLE)
  case $status in DONE|STOPPED|ERROR|UNREACHABLE) break ;; esac
  sleep "$POLL" & wait $!
done

# Trials with their final metric, best first.
python - "$API" <<'PY' || true
import json
import sys
import urllib.request

jobs = json.load(urllib.request.urlopen(sys.argv[1] + "/trial-jobs", timeout=10))
rows = []
for j in jobs:
    final = j.get("finalMetricData") or []
    value = float(json.loads(json.loads(final[0]["data"]))) if final else float("nan")
    params = json.loads(j["hyperParameters"][0])["parameters"] if j.get("hyperParameters") else {}
    rows.append((value, j["trialJobId"], j["status"], params))
rows.sort(key=lambda r: -r[0] if r[0] == r[0] else float("inf"))
print("final metric = best validation SG top-1")
for value, tid, st, params in rows:
    print(f"{tid}  {st:<10} {value:.4f}  {json.dumps(params)}")
PY
echo "experiment $EXP_ID finished with status $status"
[ "$status" = DONE ] || [ "$status" = STOPPED ]
