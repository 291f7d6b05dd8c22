/* SpecConcat, host library. */
#include "spec_concat.h"
#include "specdeploy/status.h"

extern "C" SD_API sd_status sd_spec_concat_forward(const sd_spec_concat_params* p, int32_t batch,
                                                   const int32_t* const* xs, int32_t* y, void* workspace,
                                                   size_t workspace_bytes, void* stream) {
    (void)stream;
    sd::clear_error();
    sd::ConcatPlan P;
    sd_status st = sd::plan_concat(p, batch, &P);
    if (st != SD_OK) return st;
    if (batch == 0) return SD_OK;
    if ((st = sd_concat_check_inputs(P, xs)) != SD_OK) return st;
    if ((st = sd::check_ptr("SpecConcat", "y", y)) != SD_OK) return st;
    if ((st = sd::check_workspace("SpecConcat", workspace, workspace_bytes, P.ws_bytes)) != SD_OK) return st;
    sd_concat_producer prod;
    sd_pipe pipe;
    sd_concat_setup(P, xs, y, workspace, &prod, &pipe);
    sd_host_pipeline(prod, pipe);
    return SD_OK;
}
