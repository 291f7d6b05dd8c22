/* Identity of the CUDA kernel library, and a check that it can run on the current device. */
#include <cuda_runtime.h>

#include <stdio.h>

#include "specdeploy/cuda_util.h"
#include "specdeploy/specdeploy_c.h"
#include "specdeploy/status.h"

namespace {
__global__ void k_probe() {}
}  // namespace

extern "C" {

SD_API const char* sd_build_info(void) { return "cuda archs=" SD_CUDA_ARCHS; }

SD_API sd_status sd_check_device(void) {
    sd::clear_error();
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) return sd::cuda_fail("sd_check_device: cudaGetDevice", e);
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, dev);
    if (e != cudaSuccess) return sd::cuda_fail("sd_check_device: cudaGetDeviceProperties", e);
    cudaFuncAttributes attr;
    e = cudaFuncGetAttributes(&attr, k_probe);
    if (e != cudaSuccess) {
        char what[256];
        snprintf(what, sizeof(what), "sd_check_device: device %d (%s, sm_%d%d) cannot run this library", dev, prop.name,
                 prop.major, prop.minor);
        return sd::cuda_fail(what, e);
    }
    return SD_OK;
}

}  // extern "C"
