/* CUDA error reporting of the kernel library (host C++ compiled by nvcc; never in the host library). */
#ifndef SPECDEPLOY_CUDA_UTIL_H
#define SPECDEPLOY_CUDA_UTIL_H

#include <cuda_runtime.h>

#include "specdeploy/status.h"

#ifndef SD_CUDA_ARCHS
#define SD_CUDA_ARCHS "?"
#endif

namespace sd {

inline sd_status cuda_fail(const char* what, cudaError_t e) {
    return fail(SD_ERR_CUDA, "%s: CUDA error %s: %s (libspecdeploy_kernels built for CUDA architectures %s)", what,
                cudaGetErrorName(e), cudaGetErrorString(e), SD_CUDA_ARCHS);
}

}  // namespace sd

#endif /* SPECDEPLOY_CUDA_UTIL_H */
