#!/usr/bin/env bash
# One prepared check of the book on a GPU, at most 8 minutes on one card:
#   1. the paper profile's rehearsal, end to end, on CUDA (sae-paper book --profile paper --rehearse);
#   2. benchmarks/gpu_check.py: the matmul limit (float32, bfloat16), the SAE step by the dense,
#      sparse and auto paths in float32 and bfloat16 against it, harvest tokens/s of random-weight
#      Pythia-70M.
# Figures go to the terminal and, when $OUT is set, to $OUT/gpu_check.txt and $OUT/gpu_check.json.
#
#   benchmarks/gpu_check.sh                    # on a machine with a CUDA device
#   benchmarks/gpu_check.sh --device cpu --dry # tiny sizes on CPU, the rehearsal only planned: checks the script
#
# Without a CUDA device (and without --device cpu) it stops at once with one line and status 3.
# Environment: PYTHON (default .venv/bin/python, else python3), SAE_PAPER_CACHE (default: a fresh scratch folder),
# REHEARSAL_TIMEOUT (seconds, default 330).
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --dry) dry=1; shift ;;
    *) echo "gpu_check: unknown argument $1 (takes --device DEVICE and --dry)" >&2; exit 2 ;;
  esac
done
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
if [[ "$device" == cuda* ]] && ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing measured (--device cpu --dry checks the script)" >&2
  exit 3
fi
export HF_HUB_OFFLINE=1
export SAE_PAPER_CACHE="${SAE_PAPER_CACHE:-$(mktemp -d -t gpu-check-cache-XXXXXX)}"
out="${OUT:-}"
report=/dev/null
json_args=()
if [ -n "$out" ]; then
  mkdir -p "$out"
  report="$out/gpu_check.txt"
  json_args=(--json "$out/gpu_check.json")
fi
: > "$report"
say() { echo "$*" | tee -a "$report"; }

say "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), device $device"
status=0
started=$(date +%s)
if [ "$dry" = 1 ]; then
  # the rehearsal's command line, planned instead of run (the run takes minutes)
  "$python" -m sae_paper book --profile paper --rehearse --plan 2>&1 | tee -a "$report" || status=1
  rehearsal="planned (--dry)"
else
  if timeout "${REHEARSAL_TIMEOUT:-330}" "$python" -m sae_paper book --profile paper --rehearse 2>&1 | tee -a "$report" | tail -n 3; then
    rehearsal="passed"
  else
    rehearsal="FAILED (see ${out:-the output above})"; status=1
  fi
fi
say "rehearsal of the paper profile: $rehearsal in $(( $(date +%s) - started )) s"
flags=(--device "$device")
if [ "$dry" = 1 ]; then flags+=(--dry); fi
"$python" benchmarks/gpu_check.py "${flags[@]}" "${json_args[@]}" 2>&1 | tee -a "$report" || status=1
say "gpu_check: done in $(( $(date +%s) - started )) s, status $status"
exit "$status"
