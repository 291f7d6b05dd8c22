/* SpecToSpatial, host library. */
#include <vector>

#include "spec_to_spatial.h"
#include "specdeploy/status.h"

extern "C" SD_API sd_status sd_spec_to_spatial_forward(const sd_spec_to_spatial_params* p, int32_t batch,
                                                       const int32_t* x, void* y, void* workspace,
                                                       size_t workspace_bytes, void* stream) {
    (void)stream;
    sd::ToSpatialPlan P;
    sd_cf* twH = nullptr;
    sd_cf* twW = nullptr;
    bool run;
    const sd_status st = sd_to_spatial_prepare(p, batch, x, y, workspace, workspace_bytes, &P, &twH, &twW, &run);
    if (st != SD_OK || !run) return st;
    for (int32_t j = 0; j < P.Hs; ++j) twH[j] = sd_twiddle(j, P.Hs);
    for (int32_t j = 0; j < P.Ws; ++j) twW[j] = sd_twiddle(j, P.Ws);
    const int32_t RH = sd_ts_rows(P.Wh);
    std::vector<sd_cf> A((size_t)RH * P.Wh);
    for (int32_t s = 0; s < P.B; ++s) {
        const int32_t* row = x + (int64_t)s * P.in.S;
        for (int32_t c = 0; c < P.C; ++c) {
            const int64_t plane = (int64_t)s * P.C + c;
            for (int32_t h0 = 0; h0 < P.Hs; h0 += RH) {
                const int32_t nh = (P.Hs - h0) < RH ? (P.Hs - h0) : RH;
                for (int32_t q = 0; q < P.Wh; ++q) sd_inv_col(row, P.in, c, q, P.Hs, P.Wh, h0, nh, twH, A.data() + q, P.Wh);
                for (int32_t hl = 0; hl < nh; ++hl)
                    for (int32_t w = 0; w < P.Ws; ++w)
                        sd_store_real(y, P.y_type, (plane * P.Hs + h0 + hl) * P.Ws + w,
                                      sd_inv_row(A.data() + (int64_t)hl * P.Wh, P.Ws, w, twW, P.scale));
            }
        }
    }
    return SD_OK;
}
