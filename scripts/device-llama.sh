#!/usr/bin/env bash
# llama.cpp's own benchmark (llama-bench) on the GPU device, side by side with ours on the same
# GGUF file in the same call: the speed falsifiers of qwen3-moe-forward-gpu-v1 compare against
# what llama.cpp measures there, not against a figure taken on other hardware.
#
# llama.cpp is the one vendored by llama-cpp-python 0.3.36 (PyPI), the version the CPU oracle
# uses. The device has nvcc and CMake but no network, so its source travels in .llama-src/:
#
#   scripts/device-llama.sh --prepare        here: pip download the sdist, keep only what
#                                            llama-bench needs (ggml CPU + CUDA, src, common,
#                                            vendor, tools/llama-bench), .llama-src/llama-src.tar.xz
#   scripts/device-llama.sh build            device: CUDA build for the device's architecture
#                                            (cached in .llama-build/ while the machine stays up;
#                                            a build carried as .llama-src/llama-bench.xz is
#                                            unpacked instead: the binary itself, 82 MB, is over
#                                            the device's 64 MB carry limit)
#   scripts/device-llama.sh bench FILE JSON  device: llama-bench -ngl 99 -p 512 -n 128 -r 3 at
#                                            depths 0 and 512 (tg128 after 512 tokens is the
#                                            decode our bench times), flash attention off and
#                                            on; JSON output to JSON
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36

case "${1:-}" in
--prepare)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # Metadata preparation needs the sdist's build backend; without build isolation pip uses ours.
    python3 -m pip install -q scikit-build-core cmake >&2
    python3 -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
        -d "$tmp" "llama-cpp-python==$VERSION"
    tar -C "$tmp" -xzf "$tmp/llama_cpp_python-$VERSION.tar.gz"
    src="$tmp/llama_cpp_python-$VERSION/vendor/llama.cpp"
    dst="$tmp/strip"
    mkdir -p "$dst/tools"
    cp -r "$src"/{CMakeLists.txt,cmake,common,ggml,include,src,vendor,LICENSE,licenses} "$dst/"
    cp -r "$src/tools/llama-bench" "$dst/tools/"
    # Only the CPU and CUDA backends are built; the others' sources are dropped to keep the
    # carried tree small (CMake adds a backend's folder only when it is enabled).
    for b in et metal hexagon sycl vulkan opencl cann musa hip openvino rpc virtgpu webgpu zdnn zendnn; do
        rm -rf "$dst/ggml/src/ggml-$b"
    done
    printf 'find_package(Threads REQUIRED)\nllama_add_compile_flags()\nadd_subdirectory(llama-bench)\n' \
        >"$dst/tools/CMakeLists.txt"
    mkdir -p .llama-src
    tar -C "$tmp" -cJf .llama-src/llama-src.tar.xz strip
    echo "$VERSION" >.llama-src/VERSION
    ls -la .llama-src
    ;;
build)
    if [[ -f .llama-src/llama-bench.xz ]]; then
        # a build brought back by an earlier call (device-run.sh, PV_FETCH_LLAMA=1)
        mkdir -p .llama-build/bin && xz -d -c .llama-src/llama-bench.xz >.llama-build/bin/llama-bench
        chmod +x .llama-build/bin/llama-bench
        echo "device-llama: using the carried .llama-src/llama-bench.xz"
        exit 0
    fi
    if [[ -x .llama-build/bin/llama-bench ]]; then
        echo "device-llama: using the cached .llama-build/bin/llama-bench"
        exit 0
    fi
    [[ -f .llama-src/llama-src.tar.xz ]] || { echo "missing .llama-src/llama-src.tar.xz: run --prepare here" >&2; exit 2; }
    rm -rf .llama-build/src && mkdir -p .llama-build
    tar -C .llama-build -xJf .llama-src/llama-src.tar.xz && mv .llama-build/strip .llama-build/src
    arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
    t0=$SECONDS
    cmake -S .llama-build/src -B .llama-build/b -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TOOLS=ON >/dev/null
    cmake --build .llama-build/b --target llama-bench -j "$(nproc)" >.llama-build/build.log 2>&1 \
        || { tail -30 .llama-build/build.log >&2; exit 1; }
    mkdir -p .llama-build/bin && cp .llama-build/b/bin/llama-bench .llama-build/bin/
    echo "device-llama: built llama-bench (sm_$arch) in $((SECONDS - t0)) s"
    ;;
bench)
    file=${2:?GGUF file}
    json=${3:?output JSON}
    bin=.llama-build/bin/llama-bench
    [[ -x "$bin" ]] || { echo "no llama-bench: run 'scripts/device-llama.sh build' first" >&2; exit 2; }
    "$bin" -m "$file" -ngl 99 -p 512 -n 128 -d 0,512 -r 3 -fa 0,1 -o json >"$json"
    ;;
*)
    sed -n 2,20p "$0" >&2
    exit 2
    ;;
esac
