#!/usr/bin/env bash
# mlxnote on an NVIDIA GPU: installs MLX's CUDA build from wheels brought along (no network),
# then runs the full conformance suite and the benchmarks on the GPU and writes both reports.
#
#   scripts/cuda_check.sh [WHEEL_DIR]
#   scripts/cuda_check.sh --assemble WHEEL_DIR DEST_DIR   # only rebuild a split wheel
#
# scripts/README.md has the details: which wheels, split parts, the environment variables
# (OUT, PYTHON, BENCH_ARGS, ...), what lands in the output folder, and the exit codes.
set -euo pipefail

MLX_VERSION="${MLX_VERSION:-0.32.4}"
CUDA_PKG="mlx_cuda_13"                  # the wheel's file-name prefix (PyPI: mlx-cuda-13)
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"

say() { printf 'cuda_check: %s\n' "$*" >&2; }
die() {  # die CODE MESSAGE...
    local code="$1"
    shift
    printf 'cuda_check: ERROR: %s\n' "$*" >&2
    exit "$code"
}

# -- wheels ------------------------------------------------------------------------------
# The directory holding the mlx-cuda-13 wheel (or its parts): the argument, $MLXNOTE_WHEELS,
# or the first of ./wheels, ./shared/wheels, ../shared/wheels that has one.
find_wheel_dir() {
    local d
    for d in "$@" "${MLXNOTE_WHEELS:-}" "$REPO/wheels" "$REPO/shared/wheels" \
             "$REPO/../shared/wheels"; do
        if [ -z "$d" ] || [ ! -d "$d" ]; then
            continue
        fi
        if compgen -G "$d/${CUDA_PKG}-${MLX_VERSION}-*.whl*" >/dev/null; then
            (cd "$d" && pwd)
            return 0
        fi
    done
    return 1
}

# assemble_cuda_wheel WHEEL_DIR DEST_DIR: prints the path of a complete mlx-cuda-13 wheel:
# the one in WHEEL_DIR, or its parts (NAME.whl.part1, NAME.whl.part2, ... or split's
# NAME.whl.aa, NAME.whl.ab, ...: every file NAME.whl.* but .sha256) concatenated in
# version order into DEST_DIR/NAME.whl. Checks NAME.whl.sha256 when present, and the zip.
assemble_cuda_wheel() {
    local dir="$1" dest="$2" whole name
    whole="$(compgen -G "$dir/${CUDA_PKG}-${MLX_VERSION}-*.whl" | head -n 1 || true)"
    if [ -n "$whole" ]; then
        name="$(basename "$whole")"
    else
        local first
        first="$(compgen -G "$dir/${CUDA_PKG}-${MLX_VERSION}-*.whl.*" | grep -v '\.sha256$' \
                 | sort -V | head -n 1 || true)"
        [ -n "$first" ] || die 3 "no ${CUDA_PKG}-${MLX_VERSION}-*.whl (or parts of it) in $dir"
        name="$(basename "$first")"
        name="${name%.whl.*}.whl"
        local parts=()
        mapfile -t parts < <(compgen -G "$dir/$name.*" | grep -v '\.sha256$' | sort -V)
        if [ "${#parts[@]}" -lt 2 ]; then
            die 3 "only one part of $name in $dir (${parts[*]}): the rest did not arrive"
        fi
        mkdir -p "$dest"
        say "reassembling $name from ${#parts[@]} parts: ${parts[*]##*/}"
        cat "${parts[@]}" > "$dest/$name"
        whole="$dest/$name"
    fi
    if [ -f "$dir/$name.sha256" ]; then
        local want got
        want="$(awk '{print $1; exit}' "$dir/$name.sha256")"
        got="$(sha256sum "$whole" | awk '{print $1}')"
        [ "$want" = "$got" ] || die 3 "$name: sha256 $got, expected $want ($name.sha256)"
        say "$name: sha256 matches $name.sha256"
    fi
    "${PYTHON:-python3}" - "$whole" <<'PY' || die 3 "$(basename "$whole") is not a complete wheel (a part missing, or parts out of order?)"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    names = z.namelist()
if bad is not None or not any(n.endswith("libmlx.so") for n in names):
    sys.exit(1)
PY
    printf '%s\n' "$whole"
}

if [ "${1:-}" = "--assemble" ]; then
    [ $# -eq 3 ] || die 64 "usage: $0 --assemble WHEEL_DIR DEST_DIR"
    assemble_cuda_wheel "$2" "$3"
    exit 0
fi
[ $# -le 1 ] || die 64 "usage: $0 [WHEEL_DIR]  (or: $0 --assemble WHEEL_DIR DEST_DIR)"

# CUDA_CHECK_DRY=1 (tests of this script on a machine without a GPU): skips steps 1 and 3
# (the GPU, the wheels, the venv) and runs steps 4 and 5 with $PYTHON as it is.
DRY="${CUDA_CHECK_DRY:-0}"

# -- 1. an NVIDIA GPU and its driver -------------------------------------------------------
if [ "$DRY" = 1 ]; then
    GPUS="(dry run: no GPU probed)"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
    die 2 "no NVIDIA GPU here: nvidia-smi is not installed (no NVIDIA driver). This check" \
          "needs a machine with an NVIDIA GPU; on this one run the GPU formulation on the" \
          "CPU instead: make conformance-gpu"
elif ! GPUS="$(nvidia-smi -L 2>&1)" || ! grep -q '^GPU [0-9]' <<<"$GPUS"; then
    die 2 "no NVIDIA GPU here: nvidia-smi -L lists none (${GPUS:-no output})"
fi
say "GPU: $(head -n 1 <<<"$GPUS")"

# -- 2. where things go --------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || die 4 "no Python interpreter '$PYTHON' (set PYTHON=...)"
PYTAG="$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
OUTDIR="${OUT:-$REPO/reports/cuda-check-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
WORK="${CUDA_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mlxnote-cuda-check.XXXXXX")}"
mkdir -p "$WORK"
say "output: $OUTDIR; work folder (venv, reassembled wheel): $WORK"

MLX_WHEEL="" CUDA_WHEEL=""
if [ "$DRY" = 1 ]; then
    VPY="$PYTHON"
    PIP=("$VPY" -m pip install --no-index --disable-pip-version-check --no-input)
    printf 'dry run: %s\n' "$("$VPY" -c 'import mlx.core as mx; print(mx.default_device())')" \
        >"$WORK/mlx-check.log"
else  # the real run: steps 2 and 3, unindented, down to "fi  # not a dry run"
WHEELS="$(find_wheel_dir "${1:-}")" || die 3 "no ${CUDA_PKG}-${MLX_VERSION} wheel (or its" \
    "parts) in ${1:-\$MLXNOTE_WHEELS, $REPO/wheels or shared/wheels}: bring" \
    "mlx-cuda-13==${MLX_VERSION} and mlx==${MLX_VERSION} for ${PYTAG} (pip download" \
    "--no-deps mlx==${MLX_VERSION} mlx-cuda-13==${MLX_VERSION} --python-version ..." \
    "--platform manylinux_2_35_x86_64 -d wheels)"
CUDA_WHEEL="$(assemble_cuda_wheel "$WHEELS" "$WORK/wheels")"
MLX_WHEEL="$(compgen -G "$WHEELS/mlx-${MLX_VERSION}-${PYTAG}-*.whl" | head -n 1 || true)"
[ -n "$MLX_WHEEL" ] || die 3 "no mlx-${MLX_VERSION}-${PYTAG}-*.whl in $WHEELS for this" \
    "Python ($("$PYTHON" --version 2>&1)); found: $(compgen -G "$WHEELS/mlx-*.whl" | xargs -r -n 1 basename | tr '\n' ' ')"

# -- 3. a virtual environment with MLX's CUDA build ---------------------------------------
# --system-site-packages: the machine's NVIDIA runtime wheels, TensorFlow (the suite's
# reference), NumPy and rich are used as installed; MLX itself goes into the venv, over any
# MLX (mlx-cpu) the machine has.
VENV="$WORK/venv"
if ! "$PYTHON" -m venv --system-site-packages "$VENV" >"$WORK/venv.log" 2>&1; then
    say "python -m venv failed ($(tail -n 1 "$WORK/venv.log")); retrying without pip" \
        "(the system's pip is used through the system site-packages)"
    rm -rf "$VENV"
    "$PYTHON" -m venv --system-site-packages --without-pip "$VENV" \
        || die 4 "could not create a virtual environment with $PYTHON"
fi
VPY="$VENV/bin/python"
"$VPY" -m pip --version >/dev/null 2>&1 || die 4 "no pip in the virtual environment"
PIP=("$VPY" -m pip install --no-index --disable-pip-version-check --no-input)

say "installing $(basename "$MLX_WHEEL") and $(basename "$CUDA_WHEEL") into the venv"
"${PIP[@]}" --no-deps --ignore-installed "$MLX_WHEEL" "$CUDA_WHEEL" >"$WORK/pip-mlx.log" 2>&1 \
    || die 5 "pip could not install the MLX wheels (see $WORK/pip-mlx.log): $(tail -n 3 "$WORK/pip-mlx.log")"
# Other wheels brought along (NVIDIA runtime, TensorFlow, ...): installed when present.
mapfile -t EXTRA < <(compgen -G "$WHEELS/*.whl" | grep -v -e "/mlx-${MLX_VERSION}-" \
                     -e "/${CUDA_PKG}-" || true)
if [ "${#EXTRA[@]}" -gt 0 ]; then
    say "installing ${#EXTRA[@]} more wheel(s) from $WHEELS"
    "${PIP[@]}" --find-links "$WHEELS" "${EXTRA[@]}" >"$WORK/pip-extra.log" 2>&1 \
        || say "warning: some wheels of $WHEELS did not install (see $WORK/pip-extra.log)"
fi

# MLX's libmlx.so finds the NVIDIA libraries relative to its own site-packages; these may
# live in another one (the system's), so every nvidia/*/lib found goes on the loader path.
NV_LIBS="$("$VPY" - <<'PY'
import glob, os, site, sys
dirs = []
for p in sys.path + site.getsitepackages():
    for pat in ("nvidia/*/lib", "nvidia/*/*/lib"):
        for d in sorted(glob.glob(os.path.join(p, pat))):
            if d not in dirs:
                dirs.append(d)
for d in sorted(glob.glob("/usr/local/cuda*/lib64")):
    dirs.append(d)
print(":".join(dirs))
PY
)"
export LD_LIBRARY_PATH="${NV_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# MLX on the GPU, from the venv.
if ! "$VPY" - "$VENV" >"$WORK/mlx-check.log" 2>&1 <<'PY'
import os, sys
import mlx.core as mx
venv = os.path.realpath(sys.argv[1])
where = os.path.realpath(mx.__file__)
assert where.startswith(venv + os.sep), f"mlx.core comes from {where}, not the venv {venv}"
assert mx.cuda.is_available(), "mx.cuda.is_available() is False"
assert mx.default_device().type == mx.DeviceType.gpu, f"default device {mx.default_device()}"
a = mx.random.normal((256, 256))
mx.eval(a @ a)
try:
    info = mx.device_info()
except Exception as e:  # only the description is lost
    info = f"(device_info: {e})"
print(f"mlx {mx.__version__} {where}: {mx.default_device()} {info}")
PY
then
    die 6 "MLX's CUDA backend does not run here: $(tail -n 2 "$WORK/mlx-check.log")." \
          "A missing NVIDIA library (libcublas, libcudnn, libnccl, libnvrtc, libcufft," \
          "libcusolver) means the NVIDIA runtime wheels mlx-cuda-13 needs are not installed:" \
          "bring them into $WHEELS (pip download mlx-cuda-13==${MLX_VERSION}); a missing" \
          "libcuda.so.1 means no NVIDIA driver."
fi
fi  # not a dry run
say "$(tail -n 1 "$WORK/mlx-check.log")"

# -- 4. mlxnote and what the suite needs ---------------------------------------------------
cd "$REPO"
if [ "$DRY" = 1 ]; then
    say "dry run: mlxnote runs from $REPO as $PYTHON has it"
elif MLXNOTE_BUILD_EXT=0 "${PIP[@]}" --no-deps --no-build-isolation -e "$REPO" \
        >"$WORK/pip-mlxnote.log" 2>&1; then
    say "mlxnote installed (editable, without the CPU-only C++ extension)"
else
    say "pip could not install mlxnote offline (see $WORK/pip-mlxnote.log): running it from" \
        "$REPO through PYTHONPATH"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
"$VPY" -c 'import numpy, rich' 2>/dev/null || die 7 "numpy and rich must be importable" \
    "(bring their wheels into $WHEELS)"
HAVE_TF=1
"$VPY" -c 'import tensorflow' >/dev/null 2>&1 || HAVE_TF=0

export MLX_ENABLE_TF32=0          # float32 matmuls and convs at full precision
export MLXNOTE_FORMULATION=auto   # the GPU default device picks the GPU formulation
export MLXNOTE_EXT=0              # the C++ extension is CPU-only
export NVIDIA_TF32_OVERRIDE=0      # and no TF32 in cuBLAS/cuDNN, whoever calls them
export TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
         "$(git -C "$REPO" status --porcelain 2>/dev/null | wc -l) changed files"
    echo "python: $("$VPY" --version 2>&1)"
    echo "wheels: ${MLX_WHEEL##*/} ${CUDA_WHEEL##*/}"
    echo "LD_LIBRARY_PATH: ${LD_LIBRARY_PATH:-}"
    echo "--- nvidia-smi"
    nvidia-smi 2>&1 || true
    echo "--- mlx"
    cat "$WORK/mlx-check.log"
    echo "--- python -m mlxnote info"
    "$VPY" -m mlxnote info 2>&1 || true
    echo "--- packages"
    "$VPY" -m pip list 2>/dev/null | grep -i -E '^(mlx|nvidia|tensorflow|numpy|keras|torch)' || true
} >"$OUTDIR/env.txt"

# -- 5. the conformance suite on the GPU, then the benchmarks -----------------------------
# TensorFlow, the reference, runs on the CPU even where it is a GPU build
# (conformance/reference hides the GPUs from it and turns its TF32 off).
CONF_RC=0
if [ "$HAVE_TF" = 1 ]; then
    read -r -a CONF_OPTS <<<"${CONFORMANCE_ARGS:---tier full}"
    say "conformance suite (${CONF_OPTS[*]}, --formulation auto on the GPU) ->" \
        "$OUTDIR/conformance"
    timeout "${CONFORMANCE_TIMEOUT:-3600}" "$VPY" -m conformance "${CONF_OPTS[@]}" \
        --formulation auto --no-progress --out "$OUTDIR/conformance" \
        >"$OUTDIR/conformance.log" 2>&1 || CONF_RC=$?
    tail -n 3 "$OUTDIR/conformance.log" >&2 || true
else
    CONF_RC=8
    say "conformance suite SKIPPED: tensorflow is not importable (the suite's reference);" \
        "bring tensorflow-cpu and its wheels into $WHEELS"
fi

BENCH_RC=0
read -r -a BENCH_OPTS <<<"${BENCH_ARGS:-}"  # e.g. BENCH_ARGS="--quick --family conv"
say "benchmarks (${BENCH_ARGS:-full}) -> $OUTDIR/bench.json"
timeout "${BENCH_TIMEOUT:-3600}" "$VPY" -m benchmarks --json "$OUTDIR/bench.json" \
    ${BENCH_OPTS[@]+"${BENCH_OPTS[@]}"} >"$OUTDIR/bench.log" 2>&1 || BENCH_RC=$?

{
    echo "GPU: $(head -n 1 <<<"$GPUS")"
    echo "conformance: exit $CONF_RC: $(grep -E 'passed, [0-9]+ failed' "$OUTDIR/conformance.log" 2>/dev/null | tail -n 1 || echo 'not run')"
    echo "benchmarks: exit $BENCH_RC ($(grep -c . "$OUTDIR/bench.log" 2>/dev/null || echo 0) log lines)"
} | tee "$OUTDIR/summary.txt" >&2
[ "$CONF_RC" = 0 ] && [ "$BENCH_RC" = 0 ] || exit 1
say "done: $OUTDIR"
