/* SpecPool, host library. */
#include "spec_pool.h"
#include "specdeploy/status.h"

extern "C" SD_API sd_status sd_spec_pool_forward(const sd_spec_pool_params* p, int32_t batch, const int32_t* x,
                                                 int32_t* y, void* workspace, size_t workspace_bytes, void* stream) {
    (void)stream;
    sd_pool_producer prod;
    sd_pipe pipe;
    bool run;
    const sd_status st = sd_pool_prepare(p, batch, x, y, workspace, workspace_bytes, &prod, &pipe, &run);
    if (st != SD_OK || !run) return st;
    sd_host_pipeline(prod, pipe);
    return SD_OK;
}
