/* SpecPool, CUDA library: the packed-output pipeline over sd_pool_producer. */
#include <cuda_runtime.h>

#include "spec_pool.h"
#include "specdeploy/cuda_util.h"
#include "specdeploy/pipeline.cuh"
#include "specdeploy/status.h"

extern "C" SD_API sd_status sd_spec_pool_forward(const sd_spec_pool_params* p, int32_t batch, const int32_t* x,
                                                 int32_t* y, void* workspace, size_t workspace_bytes, void* stream) {
    sd::clear_error();
    sd::PoolPlan P;
    sd_status st = sd::plan_pool(p, batch, &P);
    if (st != SD_OK) return st;
    if (batch == 0) return SD_OK;
    if ((st = sd::check_ptr("SpecPool", "x", x)) != SD_OK) return st;
    if ((st = sd::check_ptr("SpecPool", "y", y)) != SD_OK) return st;
    if ((st = sd::check_workspace("SpecPool", workspace, workspace_bytes, P.ws_bytes)) != SD_OK) return st;
    sd_pool_producer prod;
    sd_pipe pipe;
    sd_pool_setup(P, x, y, workspace, &prod, &pipe);
    const cudaError_t e = sd_launch_pipeline(prod, pipe, (cudaStream_t)stream);
    if (e != cudaSuccess) return sd::cuda_fail("SpecPool", e);
    return SD_OK;
}
