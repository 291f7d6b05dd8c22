/* SpecConcat, CUDA library: the packed-output pipeline over sd_concat_producer. The input pointers
 * travel inside the producer, a kernel parameter (no device array, no copy). */
#include <cuda_runtime.h>

#include "spec_concat.h"
#include "specdeploy/cuda_util.h"
#include "specdeploy/pipeline.cuh"
#include "specdeploy/status.h"

extern "C" SD_API sd_status sd_spec_concat_forward(const sd_spec_concat_params* p, int32_t batch,
                                                   const int32_t* const* xs, int32_t* y, void* workspace,
                                                   size_t workspace_bytes, void* stream) {
    sd_concat_producer prod;
    sd_pipe pipe;
    bool run;
    const sd_status st = sd_concat_prepare(p, batch, xs, y, workspace, workspace_bytes, &prod, &pipe, &run);
    if (st != SD_OK || !run) return st;
    const cudaError_t e = sd_launch_pipeline(prod, pipe, (cudaStream_t)stream);
    if (e != cudaSuccess) return sd::cuda_fail("SpecConcat", e);
    return SD_OK;
}
