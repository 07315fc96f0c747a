#!/bin/sh
# Keeps only the llama.cpp binaries an image needs. node-llama-cpp installs prebuilt binaries for
# every GPU kind as optional packages (~620 MB); the CPU image keeps the CPU one alone.
#   usage: prune-gpu-binaries.sh NODE_MODULES_DIR cpu|cuda|vulkan
set -eu
dir="$1/@node-llama-cpp"
keep="$2"
[ -d "$dir" ] || exit 0
for pkg in "$dir"/*; do
  name=$(basename "$pkg")
  case "$keep:$name" in
    *:linux-x64) ;;                                   # the CPU binary, always kept as the fallback
    cuda:linux-x64-cuda | cuda:linux-x64-cuda-ext) ;;
    vulkan:linux-x64-vulkan) ;;
    *) rm -rf "$pkg" ;;
  esac
done
