#!/usr/bin/env bash
# Compile-check the TensorRT plugin sources against one or more TensorRT header directories, without
# libnvinfer and without linking: every plugins/*/trt/*.cpp and plugins/trt_common/*.cpp is compiled
# with -fsyntax-only (C++17, -Wall -Wextra -Werror on our code; TensorRT/CUDA headers as system headers).
#
#   plugins/tools/check_trt_headers.sh /usr/include/aarch64-linux-gnu            # a JetPack install
#   plugins/tools/check_trt_headers.sh /tmp/trt/v10.3.0/include /tmp/trt/v11.1/include
#   plugins/tools/check_trt_headers.sh --host-test build/plugins/libspecdeploy_host.so /usr/include/x86_64-linux-gnu
#
# --host-test LIB: also build plugins/trt_common/tests/trt_plugin_host_test.cpp with the plugin sources
# against each header set, link it with LIB (a C ABI implementation taking host pointers: the
# specdeploy_host library, .so/.a/.o) and run it. Still no libnvinfer and no GPU.
#
# Environment: CXX (default g++), CUDA_INCLUDE_DIR (default: $CUDA_HOME/include, /usr/local/cuda/include),
# SD_CHECK_NVCC=1 to also run `nvcc -std=c++17 -x cu --dryrun`-free syntax check through nvcc's host compiler.
# Exit status: 0 if every source compiles against every header set, 1 otherwise, 2 on usage errors.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugins="$(cd "${here}/.." && pwd)"

host_lib=""
if [ "${1:-}" = "--host-test" ]; then
    host_lib="${2:-}"
    shift 2 || true
    if [ -z "${host_lib}" ] || [ ! -f "${host_lib}" ]; then
        echo "error: --host-test needs an existing C ABI library file, got '${host_lib}'" >&2
        exit 2
    fi
    host_lib="$(cd "$(dirname "${host_lib}")" && pwd)/$(basename "${host_lib}")"
fi
if [ "$#" -lt 1 ]; then
    echo "usage: $0 [--host-test C_ABI_LIB] TENSORRT_INCLUDE_DIR [TENSORRT_INCLUDE_DIR ...]" >&2
    exit 2
fi

CXX="${CXX:-g++}"
cuda_inc="${CUDA_INCLUDE_DIR:-}"
if [ -z "${cuda_inc}" ]; then
    for c in "${CUDA_HOME:-}/include" /usr/local/cuda/include /usr/include; do
        if [ -f "${c}/cuda_runtime_api.h" ]; then cuda_inc="${c}"; break; fi
    done
fi
if [ -z "${cuda_inc}" ] || [ ! -f "${cuda_inc}/cuda_runtime_api.h" ]; then
    echo "error: cuda_runtime_api.h not found (TensorRT headers include it); set CUDA_INCLUDE_DIR" >&2
    exit 2
fi

mapfile -t sources < <(ls "${plugins}"/trt_common/*.cpp "${plugins}"/*/trt/*.cpp 2>/dev/null | sort)
if [ "${#sources[@]}" -eq 0 ]; then
    echo "error: no plugin sources under ${plugins}" >&2
    exit 2
fi

status=0
for inc in "$@"; do
    if [ ! -f "${inc}/NvInferRuntime.h" ]; then
        echo "FAIL ${inc}: no NvInferRuntime.h there" >&2
        status=1
        continue
    fi
    ver="$(sed -n 's/^#define \(NV_TENSORRT_MAJOR\|NV_TENSORRT_MINOR\|TRT_MAJOR_ENTERPRISE\|TRT_MINOR_ENTERPRISE\) \([0-9]*\).*/\2/p' \
        "${inc}/NvInferVersion.h" | head -2 | paste -sd. -)"
    nfail=0
    for src in "${sources[@]}"; do
        rel="${src#"${plugins}"/}"
        if ! out="$("${CXX}" -std=c++17 -fsyntax-only -Wall -Wextra -Wpedantic -Werror \
                -isystem "${inc}" -isystem "${cuda_inc}" \
                -I"${plugins}/common/include" -I"${plugins}" -I"${plugins}/trt_common" \
                "${src}" 2>&1)"; then
            echo "FAIL TensorRT ${ver:-?} (${inc}): ${rel}"
            echo "${out}" | head -30
            nfail=$((nfail + 1))
        fi
        if [ "${SD_CHECK_NVCC:-0}" = "1" ] && command -v nvcc >/dev/null 2>&1; then
            if ! out="$(nvcc -std=c++17 -x cu -Xcompiler -fsyntax-only -c -o /dev/null \
                    -isystem "${inc}" -I"${plugins}/common/include" -I"${plugins}" -I"${plugins}/trt_common" \
                    "${src}" 2>&1)"; then
                echo "FAIL (nvcc) TensorRT ${ver:-?} (${inc}): ${rel}"
                echo "${out}" | head -30
                nfail=$((nfail + 1))
            fi
        fi
    done
    if [ -n "${host_lib}" ] && [ "${nfail}" -eq 0 ]; then
        exe="$(mktemp -d)/trt_plugin_host_test"
        if ! out="$("${CXX}" -std=c++17 -O1 -g -Wall -Wextra -isystem "${inc}" -isystem "${cuda_inc}" \
                -I"${plugins}/common/include" -I"${plugins}" -I"${plugins}/trt_common" \
                "${plugins}/trt_common/tests/trt_plugin_host_test.cpp" "${sources[@]}" "${host_lib}" \
                -Wl,-rpath,"$(dirname "${host_lib}")" -o "${exe}" 2>&1)"; then
            echo "FAIL TensorRT ${ver:-?} (${inc}): host test does not build"
            echo "${out}" | head -30
            nfail=$((nfail + 1))
        elif ! out="$("${exe}" 2>&1)"; then
            echo "FAIL TensorRT ${ver:-?} (${inc}): host test"
            echo "${out}" | tail -30
            nfail=$((nfail + 1))
        else
            echo "OK   TensorRT ${ver:-?} (${inc}): host test ($(echo "${out}" | head -1))"
        fi
        rm -rf "$(dirname "${exe}")"
    fi
    if [ "${nfail}" -eq 0 ]; then
        echo "OK   TensorRT ${ver:-?} (${inc}): ${#sources[@]} sources"
    else
        status=1
    fi
done
exit "${status}"
