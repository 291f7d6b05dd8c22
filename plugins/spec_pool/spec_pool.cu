/* SpecPool, CUDA library: the packed-output pipeline over sd_pool_producer. */
#include <cuda_runtime.h>

#include "spec_pool.h"
#include "specdeploy/cuda_util.h"
#include "specdeploy/pipeline.cuh"
#include "specdeploy/status.h"

extern "C" SD_API sd_status sd_spec_pool_forward(const sd_spec_pool_params* p, int32_t batch, const int32_t* x,
                                                 int32_t* y, void* workspace, size_t workspace_bytes, void* stream) {
    sd_pool_producer prod;
    sd_pipe pipe;
    bool run;
    const sd_status st = sd_pool_prepare(p, batch, x, y, workspace, workspace_bytes, &prod, &pipe, &run);
    if (st != SD_OK || !run) return st;
    const cudaError_t e = sd_launch_pipeline(prod, pipe, (cudaStream_t)stream);
    if (e != cudaSuccess) return sd::cuda_fail("SpecPool", e);
    return SD_OK;
}
