#!/usr/bin/env bash
# One prepared check of the CUDA path on one GPU, in at most 8 minutes; a summary table comes last.
#
#   bash bench/gpu_check.sh [--wheels DIR] [--out DIR]
#
#   PYTHON   interpreter to use (default python3); its own torch/torchvision are used as they are, never
#            installed or upgraded here
#   WHEELS   (or --wheels) a folder of wheels: those of packages this python lacks (plyfile, h5py, pytest,
#            ...) are unpacked into a temporary folder put on PYTHONPATH; torch, torchvision, triton and
#            nvidia-* wheels are never taken from it
#   OUT      (or --out) folder for the logs, one per check (default runs/gpu_check)
#
# Checks, each under its own timeout (a failure is recorded and the script goes on; the exit status is 1 if
# any check failed, 2 without CUDA): synthetic data; the CUDA tests; bf16 pretraining for one epoch, then
# resumed to two; a one-process torchrun on NCCL; bench.encoder on CUDA with bf16; bench.pretrain_step at
# the published size with the loader projection; the same step under torch.cuda.set_sync_debug_mode('error').
# The commands sit in variables below, so that a change of train.py's options is a one-line edit here. The
# timeouts add up to 475 s.
set -u
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
OUT=${OUT:-runs/gpu_check}
WHEELS=${WHEELS:-}
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) WHEELS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    echo "gpu_check: needs a CUDA GPU visible to torch ($PYTHON finds none, or no torch); nothing was run"
    exit 2
fi

mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
DATA=$TMP/data

# ---------------------------------------------------------------------------------------- the commands
DATA_CMD="$PYTHON data/make_synthetic.py --out $DATA --size small --seed 0"
# CUDA-only tests are the ones with 'cuda' in their name; test_no_sync also runs its CPU part
TESTS_CMD="$PYTHON -m pytest -q -p no:cacheprovider tests/test_edgeconv.py tests/test_fast_path.py tests/test_no_sync.py tests/test_train.py -k 'cuda or no_sync'"
TRAIN="$PYTHON train.py --config configs/demo.yaml data.root=$DATA out=$OUT/train device=cuda train.amp=bf16 train.num_workers=4"
TRAIN_CMD="$TRAIN optim.epochs=1"
RESUME_CMD="$TRAIN optim.epochs=2 resume=auto"
TORCHRUN_CMD="$PYTHON -m torch.distributed.run --standalone --nproc_per_node 1 train.py --config configs/demo.yaml data.root=$DATA out=$OUT/torchrun device=cuda train.amp=bf16 optim.epochs=1"
ENCODER_CMD="$PYTHON -m bench.encoder --device cuda --amp bf16"
STEP_CMD="$PYTHON -m bench.pretrain_step --device cuda --steps 5 --warmup 2 --loader 8 --data-root $DATA"
SYNC_CMD="$PYTHON -m bench.pretrain_step --device cuda --steps 3 --warmup 2 --no-baseline --sync-debug"

# ---------------------------------------------------------------------------------------- environment
if [ -n "$WHEELS" ]; then
    missing=$("$PYTHON" - "$WHEELS" <<'EOF'
import importlib.metadata as metadata
import pathlib
import sys

for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name = wheel.name.split("-")[0].lower().replace("_", "-")
    if name in ("torch", "torchvision", "triton") or name.startswith("nvidia-"):
        continue
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        print(wheel)
EOF
)
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086  # one wheel path per word
        if "$PYTHON" -m pip install --quiet --no-index --no-deps --target "$TMP/site" $missing >"$OUT/wheels.log" 2>&1; then
            export PYTHONPATH="$TMP/site${PYTHONPATH:+:$PYTHONPATH}"
            echo "gpu_check: installed from $WHEELS into $TMP/site: $(echo $missing | xargs -n1 basename | tr '\n' ' ')"
        else
            echo "gpu_check: installing wheels from $WHEELS failed, see $OUT/wheels.log"
        fi
    fi
fi
"$PYTHON" - <<'EOF' | tee "$OUT/environment.txt"
import importlib, platform, torch, torchvision
print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"CUDA {torch.version.cuda}, GPU {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}")
absent = []
for module in ("numpy", "h5py", "sklearn", "tqdm", "tensorboard", "yaml", "plyfile", "PIL", "matplotlib", "pytest"):
    try:
        importlib.import_module(module)
    except Exception:
        absent.append(module)
if absent:
    print(f"missing modules (checks that need them will fail; pass --wheels DIR): {' '.join(absent)}")
EOF

# ---------------------------------------------------------------------------------------- the checks
NAMES=() STATUS=() FIGURES=()
# check NAME TIMEOUT_S REQUIRED_REGEX FIGURE_REGEX COMMAND: PASS when the command exits 0 within its time and
# its log matches REQUIRED_REGEX (if not empty); the key figure is the last log line matching FIGURE_REGEX.
check() {
    local name=$1 limit=$2 required=$3 figure=$4 command=$5
    local log
    log="$OUT/$(printf '%02d' $((${#NAMES[@]} + 1)))-${name// /-}.log"
    echo "== $name (at most ${limit} s): $command"
    local start=$SECONDS
    timeout --kill-after=5 "$limit" bash -c "$command" >"$log" 2>&1
    local rc=$? status=PASS figure_text
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        status=FAIL; figure_text="timed out after ${limit} s"
    elif [ $rc -ne 0 ]; then
        # the last line naming an error, else the last line
        figure_text=$(grep -E 'Error|error:|FAILED|failed' "$log" | tail -n 1)
        [ -n "$figure_text" ] || figure_text=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1)
        status=FAIL; figure_text="exit $rc: $(echo "$figure_text" | sed 's/^[[:space:]]*//' | cut -c1-90)"
    elif [ -n "$required" ] && ! grep -Eq "$required" "$log"; then
        status=FAIL; figure_text="log lacks /$required/"
    else
        figure_text=$(grep -E "$figure" "$log" | tail -n 1 | sed 's/^[[:space:]]*//' | cut -c1-110)
    fi
    echo "   $status in $((SECONDS - start)) s: $figure_text (log: $log)"
    NAMES+=("$name") STATUS+=("$status") FIGURES+=("$figure_text")
}

check "synthetic data" 60 "" "." "$DATA_CMD"
check "cuda tests" 60 "passed" "passed|failed" "$TESTS_CMD"
check "train bf16 epoch 1" 45 "pretrained" "pretrained +:" "$TRAIN_CMD"
check "train bf16 resume to 2" 45 "resumed from .*epoch 1" "pretrained +:" "$RESUME_CMD"
check "torchrun nccl 1 process" 50 "world size 1" "pretrained +:" "$TORCHRUN_CMD"
check "bench.encoder cuda bf16" 55 "ratio ours/textbook" "ratio ours/textbook" "$ENCODER_CMD"
check "bench.pretrain_step" 110 "^summary:" "^summary:" "$STEP_CMD"
check "step under sync-debug" 50 "^summary:" "^summary:" "$SYNC_CMD"

failed=0
echo
echo "gpu_check summary ($(head -n 1 "$OUT/environment.txt"); logs in $OUT):"
printf '%-26s %-6s %s\n' "check" "status" "key figure"
for i in "${!NAMES[@]}"; do
    printf '%-26s %-6s %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${FIGURES[$i]}"
    [ "${STATUS[$i]}" = PASS ] || failed=1
done
exit $failed
