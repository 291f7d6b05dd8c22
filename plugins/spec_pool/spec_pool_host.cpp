/* SpecPool, host library. */
#include "spec_pool.h"
#include "specdeploy/status.h"

extern "C" SD_API sd_status sd_spec_pool_forward(const sd_spec_pool_params* p, int32_t batch, const int32_t* x,
                                                 int32_t* y, void* workspace, size_t workspace_bytes, void* stream) {
    (void)stream;
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
    sd_host_pipeline(prod, pipe);
    return SD_OK;
}
