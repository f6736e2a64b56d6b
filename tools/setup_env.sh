#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with the whole OpenMMLab stack.
#
#   bash tools/setup_env.sh          # idempotent; prints the venv path on the last line
#
# Environment variables:
#   MIXEDCONV_VENV       where the venv lives            (default: <repo>/.venv)
#   MIXEDCONV_CACHE      where built mmcv wheels are kept (default: ~/.cache/mixedconv)
#   PYTHON               interpreter used to create the venv (default: python3.11, else python3)
#   MIXEDCONV_CUDA_OPS   1: build mmcv's CUDA ops (also without a visible GPU); 0: CPU ops only
#                        (also on a GPU machine); unset: CUDA ops exactly when torch sees a GPU
#   TORCH_CUDA_ARCH_LIST GPU architectures of the CUDA ops, e.g. "8.0;9.0" (default: those of
#                        the visible GPUs; 9.0 when MIXEDCONV_CUDA_OPS=1 and none is visible)
#   MIXEDCONV_CUDA_HOME  a CUDA toolkit to build with instead of the pip wheels; its nvcc must
#                        have torch's CUDA major version
#   MAX_JOBS             parallel compile jobs (default: the number of cores)
#
# mmcv 2.1.0 has no wheel for torch 2.15, so it is built from the sdist and the wheel is cached
# outside the repo, keyed by the mmcv, torch, Python and CUDA versions and the GPU
# architectures; the next setup on the same machine installs it in seconds. CPU ops take about
# 8 minutes on 2 cores. The CUDA ops need nvcc: by default the CUDA compiler wheels of
# requirements/cuda.txt are installed into the venv and, with the headers and libcudart of
# torch's own CUDA wheels, make the toolkit "$venv/cuda" (docs/cuda.md; about 27 min on 2
# cores for one architecture).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MIXEDCONV_VENV:-$repo/.venv}"
cache="${MIXEDCONV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mixedconv}"
req="$repo/requirements"
export PIP_CONSTRAINT="$req/constraints.txt"   # our pins replace any machine-wide cap
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[setup_env] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "${MIXEDCONV_CUDA_OPS:-}" in
    ''|0|1) ;;
    *) die "MIXEDCONV_CUDA_OPS must be 1, 0 or unset (got '$MIXEDCONV_CUDA_OPS')" ;;
esac

# The stamp records what the venv was built from; a matching stamp means nothing to do.
stamp_of() { cat "$req"/*.txt "$repo/setup.py" "$repo/tools/setup_env.sh" | sha256sum | cut -c1-16; }
stamp="$(stamp_of)"
if [[ -f "$venv/.mixedconv-stamp" && "$(cat "$venv/.mixedconv-stamp")" == "$stamp" ]]; then
    log "environment up to date: $venv"
    echo "$venv"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$venv/bin/python" ]]; then
    py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
    "$py" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' \
        || { log "Python >= 3.9 is required (got $("$py" --version)); set PYTHON=..."; exit 1; }
    log "creating venv $venv with $("$py" --version)"
    "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --no-input)

log "installing torch, torchvision and build tools"
"${pip[@]}" -r "$req/build.txt" torch torchvision

# ---- CUDA toolkit for mmcv's CUDA ops ------------------------------------------------------
# The release ("13.2") that nvcc in $1/bin reports, or nothing.
nvcc_release() {
    [[ -x "$1/bin/nvcc" ]] || return 0
    { "$1/bin/nvcc" --version 2>/dev/null || true; } \
        | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p'
}

# Make "$venv/cuda", a CUDA_HOME as torch.utils.cpp_extension expects it (bin/nvcc, include/,
# lib64/libcudart.so), out of symlinks into the pip wheels' shared prefix nvidia/cu13: nvcc
# (nvidia-cuda-nvcc), cicc and libdevice (nvidia-nvvm, which nvcc.profile finds in ../nvvm),
# the crt headers (nvidia-cuda-crt), and the runtime headers, libcudart and CCCL that torch's
# CUDA wheels install. Only the unversioned libcudart.so for -lcudart is missing there.
assemble_pip_toolkit() {
    log "installing the CUDA compiler wheels (requirements/cuda.txt)"
    "${pip[@]}" -r "$req/cuda.txt"
    local prefix
    prefix="$("$venv/bin/python" - <<'PY'
import os, nvidia
for root in nvidia.__path__:
    cand = os.path.join(root, 'cu13')
    if os.path.isfile(os.path.join(cand, 'bin', 'nvcc')):
        print(cand)
        break
PY
)"
    [[ -n "$prefix" ]] || die "nvidia-cuda-nvcc installed no nvidia/cu13/bin/nvcc"
    local need
    for need in bin/nvcc nvvm/bin/cicc include/cuda_runtime.h include/crt/host_config.h \
                lib/libcudart.so.13; do
        [[ -e "$prefix/$need" ]] || die "the CUDA wheels lack $prefix/$need"
    done
    local home="$venv/cuda"
    rm -rf "$home"
    mkdir -p "$home/lib64"
    ln -s "$prefix/bin" "$prefix/include" "$prefix/nvvm" "$home/"
    ln -s "$prefix"/lib/* "$home/lib64/"
    ln -s libcudart.so.13 "$home/lib64/libcudart.so"
    cuda_home="$home"
}

# ---- mmcv with compiled ops, from the wheel cache or built once --------------------------
read -r torch_ver py_tag torch_cuda gpu_archs < <("$venv/bin/python" - <<'PY'
import sys, torch
gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
archs = sorted({'%d.%d' % torch.cuda.get_device_capability(i) for i in range(gpus)})
print(torch.__version__.split('+')[0], f'cp{sys.version_info.major}{sys.version_info.minor}',
      torch.version.cuda or 'none', ';'.join(archs) or 'none')
PY
)
if [[ "${MIXEDCONV_CUDA_OPS:-}" == 1 || ( -z "${MIXEDCONV_CUDA_OPS:-}" && "$gpu_archs" != none ) ]]; then
    with_cuda=1
else
    with_cuda=0
    if [[ "$gpu_archs" != none ]]; then
        log "WARNING: MIXEDCONV_CUDA_OPS=0 on a GPU machine: mmcv gets CPU ops only, and"
        log "         mmdet/mmseg models need its CUDA ops on the GPU"
    fi
fi
cuda_tag=cpu
if (( with_cuda )); then
    [[ "$torch_cuda" != none ]] || die "CUDA ops requested but torch $torch_ver has no CUDA"
    if [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
        if [[ "$gpu_archs" != none ]]; then
            TORCH_CUDA_ARCH_LIST="$gpu_archs"
        else
            TORCH_CUDA_ARCH_LIST=9.0
            log "no GPU visible: building the CUDA ops for TORCH_CUDA_ARCH_LIST=9.0 (Hopper)"
        fi
    fi
    # "8.0 9.0+PTX" -> "sm80_sm90+ptx" for the cache key, "8.0;9.0+PTX" for torch
    arch_tag="$(tr ' ;,' '\n\n\n' <<<"$TORCH_CUDA_ARCH_LIST" | sed -e '/^$/d' | sort -V -u \
                | sed -e 's/\.//' -e 's/+PTX$/+ptx/' -e 's/^/sm/' | paste -sd_ -)"
    [[ "$arch_tag" =~ ^sm[0-9]+[af]?(\+ptx)?(_sm[0-9]+[af]?(\+ptx)?)*$ ]] \
        || die "TORCH_CUDA_ARCH_LIST='$TORCH_CUDA_ARCH_LIST' is not a list like '8.0;9.0+PTX'"
    export TORCH_CUDA_ARCH_LIST="$(tr ' ;,' '\n\n\n' <<<"$TORCH_CUDA_ARCH_LIST" | sed '/^$/d' \
                                   | sort -V -u | paste -sd';' -)"
    # The toolkit: MIXEDCONV_CUDA_HOME if given (same major version as torch's CUDA), else a
    # system toolkit whose nvcc has exactly torch's CUDA release, else the pip wheels.
    cuda_home=""
    if [[ -n "${MIXEDCONV_CUDA_HOME:-}" ]]; then
        rel="$(nvcc_release "$MIXEDCONV_CUDA_HOME")"
        [[ -n "$rel" ]] || die "MIXEDCONV_CUDA_HOME=$MIXEDCONV_CUDA_HOME has no working bin/nvcc"
        [[ "${rel%%.*}" == "${torch_cuda%%.*}" ]] \
            || die "nvcc $rel in MIXEDCONV_CUDA_HOME cannot build for torch's CUDA $torch_cuda"
        cuda_home="$MIXEDCONV_CUDA_HOME"
    else
        sys_home="${CUDA_HOME:-${CUDA_PATH:-/usr/local/cuda}}"
        if [[ "$(nvcc_release "$sys_home")" == "$torch_cuda" ]]; then
            cuda_home="$sys_home"
        fi
    fi
fi
mmcv_ver="$(sed -n 's/^mmcv==//p' "$req/constraints.txt")"
if (( with_cuda )); then
    # the release of the toolkit that will be used: torch's own unless MIXEDCONV_CUDA_HOME
    # names another one
    tool_rel="$torch_cuda"
    if [[ -n "$cuda_home" ]]; then tool_rel="$(nvcc_release "$cuda_home")"; fi
    cuda_tag="cu${torch_cuda//./}"
    if [[ "$tool_rel" != "$torch_cuda" ]]; then cuda_tag+="-nvcc${tool_rel//./}"; fi
    cuda_tag+="-$arch_tag"
fi
wheel_dir="$cache/wheels/mmcv-$mmcv_ver-torch$torch_ver-$py_tag-$cuda_tag"
if ! compgen -G "$wheel_dir/mmcv-*.whl" >/dev/null; then
    build="$(mktemp -d)"
    trap 'rm -rf "$build"' EXIT
    build_env=(MMCV_WITH_OPS=1 "MAX_JOBS=${MAX_JOBS:-$(nproc)}")
    if (( with_cuda )); then
        command -v g++ >/dev/null || die "nvcc needs a host C++ compiler: install g++"
        if [[ -z "$cuda_home" ]]; then
            assemble_pip_toolkit
        fi
        rel="$(nvcc_release "$cuda_home")"
        [[ "$rel" == "$tool_rel" ]] \
            || die "nvcc in $cuda_home is release '${rel:-?}', expected $tool_rel (torch's CUDA" \
                   "is $torch_cuda; requirements/cuda.txt must pin the same release)"
        log "CUDA toolkit: $cuda_home (nvcc $rel), architectures $TORCH_CUDA_ARCH_LIST"
        build_env+=(FORCE_CUDA=1 "CUDA_HOME=$cuda_home" "PATH=$cuda_home/bin:$PATH")
        what="CPU and CUDA ops ($cuda_tag; about 27 min on 2 cores per architecture)"
    else
        # mmcv compiles CUDA ops whenever torch sees a GPU: hide it for a CPU-only build
        build_env+=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
        what="CPU ops (about 8 min on 2 cores)"
    fi
    log "building mmcv $mmcv_ver for torch $torch_ver/$py_tag with $what"
    "$venv/bin/python" -m pip download --no-deps --no-binary :all: --no-build-isolation \
        -d "$build" "mmcv==$mmcv_ver"
    tar -xzf "$build"/mmcv-*.tar.gz -C "$build"
    src="$(echo "$build"/mmcv-"$mmcv_ver")"
    # torch >= 2.5 headers need C++20; mmcv 2.1.0 hard-codes c++14/c++17 for g++ and nvcc.
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
    grep -q -- '-std=c++20' "$src/setup.py" || die "could not patch the C++ standard in mmcv's setup.py"
    built=$(date +%s)
    (cd "$src" && env "${build_env[@]}" \
        "$venv/bin/python" -m pip wheel --no-build-isolation --no-deps -w "$build/dist" .) \
        || die "building mmcv $mmcv_ver with $what failed: the compiler's first error is above"
    mkdir -p "$wheel_dir"
    mv "$build"/dist/mmcv-*.whl "$wheel_dir/"
    secs=$(( $(date +%s) - built ))
    log "built $(basename "$wheel_dir"/mmcv-*.whl) in ${secs} s ($(( secs / 60 )) min," \
        "MAX_JOBS=${MAX_JOBS:-$(nproc)}): $wheel_dir"
fi
log "installing mmcv from $wheel_dir"
"${pip[@]}" "$wheel_dir"/mmcv-*.whl

log "installing the OpenMMLab stack, test tools and mixedconv (editable)"
"${pip[@]}" -r "$req/runtime.txt" -r "$req/mminstall.txt" -r "$req/tests.txt"
"${pip[@]}" --no-deps --no-build-isolation -e "$repo"

"$venv/bin/python" -c "from mmcv.ops import RoIAlign, nms" \
    || { log "mmcv.ops is not compiled; delete $wheel_dir and rerun"; exit 1; }
if (( with_cuda )); then
    # CUDA ops compiled in: mixedconv.env asks mmcv which CUDA release built its ops
    "$venv/bin/python" -c 'import sys; from mixedconv.env import mmcv_cuda_release
sys.exit(mmcv_cuda_release() is None)' \
        || die "mmcv's _ext has no CUDA kernels; delete $wheel_dir and rerun"
fi
echo "$stamp" > "$venv/.mixedconv-stamp"
log "environment ready in $(( $(date +%s) - start )) s: $venv"
echo "$venv"
