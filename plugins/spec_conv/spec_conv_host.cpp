/* SpecConv, host library: the C ABI over the same per-element functions as spec_conv.cu. */
#include <new>
#include <vector>

#include "spec_conv.h"
#include "specdeploy/status.h"

namespace {

/* The hybrid block's chunk preparation on the CPU (spec_conv.h; the CUDA launcher runs the same steps
 * as kernels, its GEMM reading the input in place and accumulating Y in its epilogue): for the chunk's
 * samples that take part in the pass, Z of output channels [o0, o0 + no) into the workspace. The GEMM
 * operands (an input tile of nf frequencies, one tap's product) live in this library's own scratch
 * (`Scratch`, heap), not in the declared workspace: the GPU needs neither. */
struct HostHybPrep {
    struct Scratch {
        std::vector<float> xt, g;
        std::vector<sd_cf> a; /* one stage plane, when the plan keeps it out of the workspace */
        std::vector<char> want;
    };
    const sd::ConvPlan* P;
    const sd_conv_producer* in;
    const sd_pipe* a;
    const float* w;
    const float* bias;
    unsigned char* base;
    Scratch* scr;

    /* frequencies per GEMM tile on the host: any tiling gives the same bits (each element sums c in order) */
    static int32_t tile_nf(const sd::ConvPlan& p) { return p.F < SD_BLOCK_F ? p.F : SD_BLOCK_F; }

    void operator()(int mode, const sd_tile_range& r) const {
        const sd::ConvPlan& p = *P;
        const int32_t o0 = r.og0 * sd_conv_producer::OT;
        const int32_t no = (p.O - o0) < p.hyb_ot ? (p.O - o0) : p.hyb_ot;
        const int32_t k = p.k, kk = k * k, nf = tile_nf(p); /* fp32 operands (the GPU's split GEMM keeps ~fp32) */
        const int64_t ldg = (int64_t)p.hyb_sb * 2 * nf;
        float* Xt = scr->xt.data(); /* [C][ldg] */
        float* G = scr->g.data();   /* [ot][ldg] */
        sd_cf* Y = (sd_cf*)(base + p.h_y); /* spectrum, then the spatial map, then Z (plane stride F) */
        /* inverse column stage, then the forward row stage: per plane in the workspace for F > kHybSmemMaxF,
         * else one plane of scratch reused (the GPU's shared memory) */
        sd_cf* A = p.hyb_stage_ws ? (sd_cf*)(base + p.h_a) : nullptr;
        const sd_cf* twH = in->twH;
        const sd_cf* twW = in->twW;
        const sd_cf* twH2 = p.pool != SD_POOL_NONE ? (const sd_cf*)(base + p.tw_h2) : twH;
        const sd_cf* twW2 = p.pool != SD_POOL_NONE ? (const sd_cf*)(base + p.tw_w2) : twW;
        char* want = scr->want.data();
        for (int32_t sl = 0; sl < r.ns; ++sl) want[sl] = sd_pass_wants(*a, mode, r.s0 + sl) ? 1 : 0;
        const int32_t NB = (p.F + nf - 1) / nf;
        for (int32_t b = 0; b < NB; ++b) {
            /* input tile: X[c, (s, f)] of this frequency tile, re/im interleaved; zeros past F */
            for (int32_t c = 0; c < p.C; ++c)
                for (int32_t sl = 0; sl < p.hyb_sb; ++sl)
                    for (int32_t fl = 0; fl < nf; ++fl) {
                        const int32_t f = b * nf + fl;
                        sd_cf x = sd_cf_zero();
                        if (sl < r.ns && want[sl] && f < p.F) x = in->input(r.s0 + sl, c, f);
                        const int64_t i = (int64_t)c * ldg + ((int64_t)sl * nf + fl) * 2;
                        Xt[i] = x.re;
                        Xt[i + 1] = x.im;
                    }
            const int64_t ncols = (int64_t)r.ns * 2 * nf;
            for (int32_t tap = 0; tap < kk; ++tap) {
                /* G = w[:, :, tap] Xt: fp32 accumulation over c in order (c outer, so the rows of Xt are read
                 * contiguously; each element still sums c = 0, 1, ... with one rounding per FMA) */
                for (int32_t ol = 0; ol < no; ++ol) {
                    float* g = G + (int64_t)ol * ldg;
                    const float* wo = w + (int64_t)(o0 + ol) * p.C * kk + tap;
                    for (int64_t n = 0; n < ncols; ++n) g[n] = 0.0f;
                    for (int32_t c = 0; c < p.C; ++c) {
                        const float wv = wo[(int64_t)c * kk];
                        const int64_t x0 = (int64_t)c * ldg;
                        for (int64_t n = 0; n < ncols; ++n) g[n] = sd_fma(wv, Xt[x0 + n], g[n]);
                    }
                }
                const int32_t u = tap / k, v = tap - u * k;
                for (int32_t sl = 0; sl < r.ns; ++sl) {
                    if (!want[sl]) continue;
                    for (int32_t ol = 0; ol < no; ++ol)
                        for (int32_t fl = 0; fl < nf; ++fl) {
                            const int32_t f = b * nf + fl;
                            if (f >= p.F) break;
                            const uint32_t pp = (uint32_t)(f / p.Wh), q = (uint32_t)(f - (int32_t)pp * p.Wh);
                            const sd_cf T = sd_hyb_tap_twiddle(pp, q, u, v, p.centre, (uint32_t)p.Hs, (uint32_t)p.Ws, twH, twW);
                            sd_cf* y = Y + ((int64_t)sl * p.hyb_ot + ol) * p.F + f;
                            *y = sd_hyb_accumulate(*y, tap, G + (int64_t)ol * ldg + ((int64_t)sl * nf + fl) * 2, T, f == 0,
                                                   bias ? bias + o0 + ol : nullptr, p.bias_scale);
                        }
                }
            }
        }
        /* inverse rfft2 + relu, pool, forward rfft2, per (sample, channel) plane, over its Y plane and a
         * stage plane of F complex (the CUDA launcher runs one block per plane, the four stages separated
         * by barriers, the stage plane in shared memory up to kHybSmemMaxF):
         * Y -> A (inverse columns), A -> Y as the spatial map (Hs*Ws floats <= 2F), Y -> A (pool, forward
         * rows), A -> Y as Z (the first oF values of the plane) */
        for (int32_t sl = 0; sl < r.ns; ++sl) {
            if (!want[sl]) continue;
            for (int32_t ol = 0; ol < no; ++ol) {
                const int64_t pl = (int64_t)sl * p.hyb_ot + ol;
                const sd_cf* Yp = Y + pl * p.F;
                sd_cf* Ap = A ? A + pl * p.F : scr->a.data();
                float* spp = (float*)(Y + pl * p.F);
                for (int32_t u = 0; u < p.Hs; ++u)
                    for (int32_t q = 0; q < p.Wh; ++q) Ap[(int64_t)u * p.Wh + q] = sd_hyb_inv_col(Yp, p.Hs, p.Wh, (uint32_t)u, q, twH);
                for (int32_t u = 0; u < p.Hs; ++u)
                    for (int32_t v = 0; v < p.Ws; ++v)
                        spp[(int64_t)u * p.Ws + v] = sd_hyb_inv_row(Ap + (int64_t)u * p.Wh, p.Ws, p.Wh, (uint32_t)v, twW, p.fft_scale);
                sd_cf* Bq = Ap; /* A is consumed: its plane holds the forward row stage */
                for (int32_t u2 = 0; u2 < p.oHs; ++u2)
                    for (int32_t q2 = 0; q2 < p.oWh; ++q2)
                        Bq[(int64_t)u2 * p.oWh + q2] = sd_hyb_fwd_row(spp, p.Hs, p.Ws, p.pool, p.oWs, u2, (uint32_t)q2, twW2);
                for (int32_t p2 = 0; p2 < p.oHs; ++p2)
                    for (int32_t q2 = 0; q2 < p.oWh; ++q2)
                        Y[pl * p.F + (int64_t)p2 * p.oWh + q2] = sd_hyb_fwd_col(Bq, p.oHs, p.oWh, (uint32_t)p2, q2, twH2, p.out_scale);
            }
        }
    }
};

sd_status forward(const sd_spec_conv_params* p, int32_t batch, const void* x, const float* w, const float* b, int32_t* y,
                  void* workspace, size_t workspace_bytes) {
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
    if (P.hyb) {
        unsigned char* base = sd::ws_base(workspace);
        HostHybPrep::Scratch scr;
        const size_t ldg = (size_t)P.hyb_sb * 2 * HostHybPrep::tile_nf(P);
        scr.xt.resize((size_t)P.C * ldg);
        scr.g.resize((size_t)P.hyb_ot * ldg);
        scr.want.resize((size_t)P.hyb_sb);
        if (!P.hyb_stage_ws) scr.a.resize((size_t)P.F);
        if (P.pool != SD_POOL_NONE) {
            sd_cf* twH2 = (sd_cf*)(base + P.tw_h2);
            sd_cf* twW2 = (sd_cf*)(base + P.tw_w2);
            for (int32_t j = 0; j < P.oHs; ++j) twH2[j] = sd_twiddle(j, P.oHs);
            for (int32_t j = 0; j < P.oWs; ++j) twW2[j] = sd_twiddle(j, P.oWs);
        }
        const sd_hyb_producer hp = sd_hyb_setup(P, workspace, prod);
        const HostHybPrep prep{&P, &prod, &pipe, w, P.has_bias ? b : nullptr, base, &scr};
        sd_host_pipeline_chunked(hp, pipe, P.hyb_sb, (P.hyb_ot + sd_conv_producer::OT - 1) / sd_conv_producer::OT, prep);
        return SD_OK;
    }
    sd_host_pipeline(prod, pipe);
    return SD_OK;
}

}  // namespace

/* The C ABI: no exception leaves it (the host's scratch vectors can fail to allocate). */
extern "C" SD_API sd_status sd_spec_conv_forward(const sd_spec_conv_params* p, int32_t batch, const void* x,
                                                 const float* w, const float* b, int32_t* y, void* workspace,
                                                 size_t workspace_bytes, void* stream) {
    (void)stream;
    try {
        return forward(p, batch, x, w, b, y, workspace, workspace_bytes);
    } catch (const std::bad_alloc&) {
        return sd::fail(SD_ERR_INTERNAL, "SpecConv: out of host memory for the hybrid GEMM's scratch");
    } catch (...) {
        return sd::fail(SD_ERR_INTERNAL, "SpecConv: unexpected error in the host library");
    }
}
