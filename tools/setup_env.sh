#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with the whole OpenMMLab stack.
#
#   bash tools/setup_env.sh          # idempotent; prints the venv path on the last line
#
# Environment variables:
#   MIXEDCONV_VENV   where the venv lives            (default: <repo>/.venv)
#   MIXEDCONV_CACHE  where built mmcv wheels are kept (default: ~/.cache/mixedconv)
#   PYTHON           interpreter used to create the venv (default: python3.11, else python3)
#
# mmcv 2.1.0 has no wheel for torch 2.15, so it is built from the sdist with compiled ops
# (about 8 minutes on 2 cores) and the wheel is cached outside the repo, keyed by the mmcv,
# torch, Python and CUDA versions; the next setup on the same machine installs it in seconds.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MIXEDCONV_VENV:-$repo/.venv}"
cache="${MIXEDCONV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mixedconv}"
req="$repo/requirements"
export PIP_CONSTRAINT="$req/constraints.txt"   # our pins replace any machine-wide cap
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[setup_env] %s\n' "$*" >&2; }

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

# ---- mmcv with compiled ops, from the wheel cache or built once --------------------------
read -r torch_ver py_tag cuda_tag < <("$venv/bin/python" - <<'PY'
import sys, torch
cuda = torch.version.cuda if torch.cuda.is_available() else None
print(torch.__version__.split('+')[0], f'cp{sys.version_info.major}{sys.version_info.minor}',
      f'cu{cuda.replace(".", "")}' if cuda else 'cpu')
PY
)
# CUDA ops need nvcc (its major version must match torch's CUDA); without it, build the CPU
# ops and say that mmdet/mmseg on the GPU will lack them
if [[ "$cuda_tag" != cpu ]] && ! command -v nvcc >/dev/null; then
    log "WARNING: a GPU is visible but nvcc is not: building mmcv with CPU ops only."
    log "         mmdet/mmseg need CUDA ops on the GPU; install the CUDA toolkit matching"
    log "         torch's CUDA ($cuda_tag), put nvcc on PATH and rerun this script."
    cuda_tag=cpu
fi
mmcv_ver="$(sed -n 's/^mmcv==//p' "$req/constraints.txt")"
wheel_dir="$cache/wheels/mmcv-$mmcv_ver-torch$torch_ver-$py_tag-$cuda_tag"
if ! compgen -G "$wheel_dir/mmcv-*.whl" >/dev/null; then
    log "building mmcv $mmcv_ver with ops for torch $torch_ver/$py_tag/$cuda_tag (about 8 min on 2 cores)"
    build="$(mktemp -d)"
    trap 'rm -rf "$build"' EXIT
    "$venv/bin/python" -m pip download --no-deps --no-binary :all: --no-build-isolation \
        -d "$build" "mmcv==$mmcv_ver"
    tar -xzf "$build"/mmcv-*.tar.gz -C "$build"
    src="$(echo "$build"/mmcv-"$mmcv_ver")"
    # torch >= 2.5 headers need C++20; mmcv 2.1.0 hard-codes c++14/c++17.
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
    grep -q -- '-std=c++20' "$src/setup.py" || { log "could not patch the C++ standard in mmcv's setup.py"; exit 1; }
    export MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
    [[ "$cuda_tag" != cpu ]] && export FORCE_CUDA=1
    mkdir -p "$wheel_dir"
    (cd "$src" && "$venv/bin/python" -m pip wheel --no-build-isolation --no-deps -w "$build/dist" .)
    mv "$build"/dist/mmcv-*.whl "$wheel_dir/"
fi
log "installing mmcv from $wheel_dir"
"${pip[@]}" "$wheel_dir"/mmcv-*.whl

log "installing the OpenMMLab stack, test tools and mixedconv (editable)"
"${pip[@]}" -r "$req/runtime.txt" -r "$req/mminstall.txt" -r "$req/tests.txt"
"${pip[@]}" --no-deps --no-build-isolation -e "$repo"

"$venv/bin/python" -c "from mmcv.ops import RoIAlign, nms" \
    || { log "mmcv.ops is not compiled; delete $wheel_dir and rerun"; exit 1; }
echo "$stamp" > "$venv/.mixedconv-stamp"
log "environment ready in $(( $(date +%s) - start )) s: $venv"
echo "$venv"
