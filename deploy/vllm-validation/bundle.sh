#!/usr/bin/env bash
# Build the vLLM bundle for a GPU host without network, in parts that fit the device tool's 64 MiB limit.
# Usage (repo root): deploy/vllm-validation/bundle.sh [VERSION]   -> .devcarry/part.00, part.01, ...
# The bundle is vLLM's wheel without what the offline engine on Hopper never loads (the FlashAttention-2
# library, the vllm-rs server binary, Blackwell-only FMHA sources, DeepGEMM builds for other Pythons, the
# Swagger UI), xz-compressed, plus the wheels of its Python requirements that the GPU image lacks
# (its package list: ../shared/design/gpu-machine-pip-freeze.txt). GPU-kernel packages vLLM lists
# (flashinfer, tilelang, cutlass-dsl ...) are left out: the FA3 path does not import them, except the
# FlashInfer top-k/top-p sampler probe, which device.sh turns off (VLLM_USE_FLASHINFER_SAMPLER=0).
set -euo pipefail
VERSION=${1:-0.26.0}
W=${WORK:-/tmp/vllm-bundle}
FREEZE=${FREEZE:-../shared/design/gpu-machine-pip-freeze.txt}
PLAT="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64 --platform any"
mkdir -p "$W/deps" "$W/need" .devcarry
python3 -m pip download -q --no-deps $PLAT -d "$W" "vllm==$VERSION"
WHL=$(ls "$W"/vllm-"$VERSION"-*.whl)
unzip -p "$WHL" '*/METADATA' | grep ^Requires-Dist | grep -v extra | sed 's/Requires-Dist: //; s/;.*//' \
  | grep -v -E '^(torch|torchaudio|torchvision|torchcodec|PyNvVideoCodec|flashinfer|apache-tvm|tilelang|nvidia-cudnn-frontend|nvidia-cutlass|quack|tokenspeed|humming|numba|fastsafetensors|nvtx|compressed-tensors|xgrammar)' > "$W/reqs.txt"
python3 -m pip download -q $PLAT -d "$W/deps" -r "$W/reqs.txt"
unzip -p "$WHL" '*/METADATA' | grep ^Requires-Dist | grep -E 'compressed-tensors|xgrammar' | sed 's/Requires-Dist: //; s/;.*//' > "$W/nodeps.txt"
python3 -m pip download -q --no-deps $PLAT -d "$W/deps" -r "$W/nodeps.txt"
# xgrammar 0.2.9 calls tvm_ffi.load_lib_module(extra_lib_paths=...), which vLLM's pin (0.1.10) lacks:
# the newest apache-tvm-ffi works (seen 2026-12-06 with 0.1.15.post2)
python3 -m pip download -q --no-deps $PLAT --platform manylinux_2_24_x86_64 -d "$W/deps" apache-tvm-ffi
# compressed-tensors (vLLM's fp8 path) imports loguru, which is not among vLLM's own requirements
python3 -m pip download -q --no-deps $PLAT -d "$W/deps" loguru
python3 - "$W" "$FREEZE" <<'PY'
import os, re, shutil, sys
w, freeze = sys.argv[1], sys.argv[2]
norm = lambda s: s.lower().replace("_", "-")
have = {norm(l.split("==")[0]) for l in open(freeze) if "==" in l}
for f in os.listdir(f"{w}/deps"):
    # apache-tvm-ffi always: the image's copy (if any) may be older than xgrammar needs
    if norm(f.split("-")[0]) not in have or norm(f.split("-")[0]) == "apache-tvm-ffi":
        shutil.copy(f"{w}/deps/{f}", f"{w}/need/{f}")
PY
rm -rf "$W/x" && mkdir "$W/x" && (cd "$W/x" && unzip -q "$WHL" \
  && rm -f vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so vllm/vllm-rs vllm/third_party/deep_gemm/_C.cpython-31[0134]-*.so \
  && rm -rf vllm/third_party/fmha_sm100 vllm/entrypoints/serve/instrumentator/static \
  && tar cf - vllm vllm-*.dist-info | xz -9 -T2 > "$W/vllm-slim.tar.xz")
tar cf - -C "$W" vllm-slim.tar.xz need | split -b 48m -d - .devcarry/part.
ls -la .devcarry
