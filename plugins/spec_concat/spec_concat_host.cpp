/* SpecConcat, host library. */
#include "spec_concat.h"
#include "specdeploy/status.h"

extern "C" SD_API sd_status sd_spec_concat_forward(const sd_spec_concat_params* p, int32_t batch,
                                                   const int32_t* const* xs, int32_t* y, void* workspace,
                                                   size_t workspace_bytes, void* stream) {
    (void)stream;
    sd_concat_producer prod;
    sd_pipe pipe;
    bool run;
    const sd_status st = sd_concat_prepare(p, batch, xs, y, workspace, workspace_bytes, &prod, &pipe, &run);
    if (st != SD_OK || !run) return st;
    sd_host_pipeline(prod, pipe);
    return SD_OK;
}
