#!/usr/bin/env bash
# Every GPU check of the CUDA kernels and the cuda backend, in few device calls (docs/kernels.md).
#
# Why a script: a lent GPU machine starts bare, runs one command of at most 10 minutes at a time and
# is lent for 30 minutes a session, with no network. So the work is staged here, carried over, and
# run in two calls whose results come back as a handful of files.
#
#   bash scripts/gpu_session.sh prepare   # here: fills .gpu-carry/ (git-ignored; about 45 MiB)
#   # on the GPU machine, from the repository root, with .gpu-carry carried (a warm machine keeps build/):
#   bash scripts/gpu_session.sh test      # build the CUDA library, pytest -m gpu     (~5 min on an H100)
#   bash scripts/gpu_session.sh bench     # kernel micro-benchmark + bench --backend cuda (~5 min)
#
# Each stage leaves two files in $OUT (the device tool's folder; results/gpu elsewhere), few enough
# for the tool's limit on files coming back: <stage>.log (everything printed) and <stage>.tgz (env.txt
# with nvidia-smi/nvcc/torch versions; test: the pytest log; bench: the kernel benchmark's JSON/CSV and
# one specdeploy-bench JSON per model). Python there: the machine's python3 with PyTorch; this package
# is used from the checkout (PYTHONPATH), not installed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARRY=$ROOT/.gpu-carry
OUTDIR=${OUT:-$ROOT/results/gpu}
STUDY=${STUDY:-results/study}
MODELS=(lenet5 alexnet vgg16 densenet)

die() { echo "gpu_session: $*" >&2; exit 2; }

prepare() {
    local fm=/usr/share/datasets/fashion-mnist
    [ -d "$fm" ] || die "Fashion-MNIST not found at $fm (apt-get install dataset-fashion-mnist)"
    grep -qx '/.gpu-carry/' .git/info/exclude 2>/dev/null || echo '/.gpu-carry/' >> .git/info/exclude
    rm -rf "$CARRY" && mkdir -p "$CARRY/fashion-mnist" "$CARRY/models" || die "cannot create $CARRY"
    cp "$fm"/*.gz "$CARRY/fashion-mnist/" || die "copying Fashion-MNIST failed"
    for m in "${MODELS[@]}"; do
        for f in "$STUDY/$m-spectral-b1.0.onnx" "$STUDY/$m-spatial.onnx"; do
            [ -f "$f" ] || die "$f missing: run python scripts/zoo_study.py first (or set STUDY=dir)"
            cp "$f" "$CARRY/models/" || die "copying $f failed"
        done
    done
    du -sh "$CARRY"
    echo "carry .gpu-carry in the device call; then: bash scripts/gpu_session.sh test  (and: bench)"
}

# Checks, data, env.txt and the CUDA library build. Returns non-zero with a message on failure, so
# the stage can still pack what it has (env.txt says what the machine was).
device_env() {
    command -v nvidia-smi >/dev/null || die "no nvidia-smi: this stage runs on the GPU machine"
    [ -d "$CARRY" ] || die ".gpu-carry missing: run 'bash scripts/gpu_session.sh prepare' here and carry it"
    W=$(mktemp -d) && mkdir -p "$OUTDIR" || die "cannot create a scratch folder or $OUTDIR"
    export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    if [ ! -e /usr/share/datasets/fashion-mnist ]; then
        mkdir -p /usr/share/datasets && ln -s "$CARRY/fashion-mnist" /usr/share/datasets/fashion-mnist ||
            echo "gpu_session: cannot link Fashion-MNIST into /usr/share/datasets (not root?): tests fall back to random images" >&2
    fi
    PY=${PYTHON:-python3}
    { date -u; nvidia-smi; nvcc --version | tail -2; "$PY" -c "import torch, onnx; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'onnx', onnx.__version__)"; } > "$W/env.txt" 2>&1
    "$PY" -m specdeploy.cli build-plugins --kind cuda > "$W/build.log" 2>&1 ||
        { tail -30 "$W/build.log"; echo "gpu_session: CUDA library build failed (build.log)" >&2; return 1; }
    export SPECDEPLOY_KERNELS_LIB=$ROOT/build/plugins/lib/libspecdeploy_kernels.so
    [ -f "$SPECDEPLOY_KERNELS_LIB" ] || { echo "gpu_session: no $SPECDEPLOY_KERNELS_LIB after the build" >&2; return 1; }
}

pack() {  # $1: stage name
    tar czf "$OUTDIR/$1.tgz" -C "$W" . && rm -rf "$W"
}

stage_test() {
    device_env || { pack test; return 1; }
    "$PY" -m pytest -m gpu -ra -p no:cacheprovider tests/test_native_gpu.py tests/test_native_backend_gpu.py -s \
        > "$W/pytest_gpu.log" 2>&1
    local rc=$?
    tail -40 "$W/pytest_gpu.log"
    pack test
    return $rc
}

stage_bench() {
    device_env || { pack bench; return 1; }
    local rc=0
    "$PY" scripts/bench_kernels.py --batches 1,8,32 --kept-from "$CARRY/models/vgg16-spectral-b1.0.onnx" \
        --out "$W/kernels" || rc=1
    # the planner counts the twin in fp16 when the spectral values are fp16: run its standard ops in fp16
    export SPECDEPLOY_CUDA_FP16=1
    for m in "${MODELS[@]}"; do
        "$PY" -m specdeploy.cli bench "$CARRY/models/$m-spectral-b1.0.onnx" --twin "$CARRY/models/$m-spatial.onnx" \
            --backend cuda --batch 1,8,32 --samples 1000 --no-progress --json "$W/bench_$m.json" || rc=1
    done
    pack bench
    return $rc
}

[ "${1:-}" = prepare ] || mkdir -p "$OUTDIR"
case "${1:-}" in
    prepare) prepare ;;
    test) stage_test 2>&1 | tee "${OUT:-$ROOT/results/gpu}/test.log" ;;
    bench) stage_bench 2>&1 | tee "${OUT:-$ROOT/results/gpu}/bench.log" ;;
    *) die "usage: bash scripts/gpu_session.sh prepare|test|bench" ;;
esac
