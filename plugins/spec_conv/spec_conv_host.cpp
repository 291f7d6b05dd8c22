/* SpecConv, host library: the C ABI over the same per-element functions as spec_conv.cu. */
#include <vector>

#include "spec_conv.h"
#include "specdeploy/status.h"

extern "C" SD_API sd_status sd_spec_conv_forward(const sd_spec_conv_params* p, int32_t batch, const void* x,
                                                 const float* w, const float* b, int32_t* y, void* workspace,
                                                 size_t workspace_bytes, void* stream) {
    (void)stream;
    sd::ConvPlan P;
    sd_conv_producer prod;
    sd_pipe pipe;
    bool run;
    const sd_status st = sd_conv_prepare(p, batch, x, w, b, y, workspace, workspace_bytes, &P, &prod, &pipe, &run);
    if (st != SD_OK || !run) return st;
    sd_cf* twH = const_cast<sd_cf*>(prod.twH);
    sd_cf* twW = const_cast<sd_cf*>(prod.twW);
    for (int32_t j = 0; j < P.Hs; ++j) twH[j] = sd_twiddle(j, P.Hs);
    for (int32_t j = 0; j < P.Ws; ++j) twW[j] = sd_twiddle(j, P.Ws);

    if (P.in_domain == SD_DOMAIN_SPATIAL && !P.stream_in) {
        sd_cf* X = const_cast<sd_cf*>(prod.X);
        std::vector<sd_cf> col((size_t)P.H);
        for (int64_t plane = 0; plane < (int64_t)P.B * P.C; ++plane) {
            sd_cf* Xp = X + plane * P.F;
            for (int32_t h = 0; h < P.H; ++h)
                for (int32_t q = 0; q < P.Wh; ++q)
                    Xp[(int64_t)h * P.Wh + q] = sd_rfft_row(x, P.x_type, (plane * P.H + h) * P.W, P.W, (uint32_t)P.Ws,
                                                            (uint32_t)q, twW);
            for (int32_t q = 0; q < P.Wh; ++q) {
                for (int32_t h = 0; h < P.H; ++h) col[h] = Xp[(int64_t)h * P.Wh + q];
                for (int32_t pp = 0; pp < P.Hs; ++pp)
                    Xp[(int64_t)pp * P.Wh + q] = sd_dft_col(col.data(), 1, P.H, (uint32_t)P.Hs, (uint32_t)pp, twH, P.fft_scale);
            }
        }
    }
    sd_host_pipeline(prod, pipe);
    return SD_OK;
}
