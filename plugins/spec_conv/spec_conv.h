/*
 * SpecConv per-element math (docs/ops.md), shared by spec_conv.cu and spec_conv_host.cpp.
 * activation none/tanh (the paper block) below; relu (the hybrid block, DESIGN §2b) further down.
 *   Y[o, f] = sum_c X[c, f] * K[o, c, f] (+ b[o] * sqrt(Hs*Ws) at f = 0)
 *   K[o, c, (p, q)] = sum_{u,v < k} w[o, c, u, v] e^{-2 pi i (p u / Hs + q v / Ws)}   (on the fly)
 *   X = rfft2(x zero-padded to Hs x Ws, norm="ortho") (spatial input: built in the workspace by a
 *       separable direct DFT, or recomputed per coefficient where needed, sd_input_spectrum) or the
 *       decoded packed input (spectral input, read per coefficient).
 */
#ifndef SPECDEPLOY_SPEC_CONV_H
#define SPECDEPLOY_SPEC_CONV_H

#include "specdeploy/complex_math.h"
#include "specdeploy/packed.h"
#include "specdeploy/pipeline.h"
#include "specdeploy/plan.h"
#include "specdeploy/specdeploy_c.h"
#include "specdeploy/status.h"

/* K[o, c, (p, q)] from the k x k kernel wk (row-major). Row twiddles of the column DFT first. */
SD_HD inline sd_cf sd_conv_kernel_coeff(const float* wk, int32_t k, uint32_t p, uint32_t q, uint32_t Hs, uint32_t Ws,
                                        const sd_cf* twH, const sd_cf* twW) {
    sd_cf K = sd_cf_zero();
    uint32_t iu = 0; /* (p * u) mod Hs */
    for (int32_t u = 0; u < k; ++u) {
        sd_cf r = sd_cf_zero();
        uint32_t iv = 0; /* (q * v) mod Ws */
        for (int32_t v = 0; v < k; ++v) {
            r = sd_rmac(r, wk[u * k + v], twW[iv]);
            iv += q;
            if (iv >= Ws) iv -= Ws;
        }
        K = sd_cmac(K, r, twH[iu]);
        iu += p;
        if (iu >= Hs) iu -= Hs;
    }
    return K;
}

/* The same for k == KK known at compile time, with the frequency's twiddles tu[u] = e^{-2 pi i p u / Hs},
 * tv[v] = e^{-2 pi i q v / Ws} precomputed: identical operations in identical order. */
template <int KK>
SD_HD inline sd_cf sd_conv_kernel_coeff_fixed(const float* wk, const sd_cf* tu, const sd_cf* tv) {
    sd_cf K = sd_cf_zero();
    SD_UNROLL
    for (int u = 0; u < KK; ++u) {
        sd_cf r = sd_cf_zero();
        SD_UNROLL
        for (int v = 0; v < KK; ++v) r = sd_rmac(r, wk[u * KK + v], tv[v]);
        K = sd_cmac(K, r, tu[u]);
    }
    return K;
}

SD_HD inline float sd_load_real(const void* x, int32_t type, int64_t i) {
    if (type == SD_FLOAT16) return sd_f16_to_f32(((const uint16_t*)x)[i]);
    return ((const float*)x)[i];
}

/* First stage of the spatial rfft2: A[h, q] = sum_{w < W} x[h, w] e^{-2 pi i q w / Ws} (row starts at row0). */
SD_HD inline sd_cf sd_rfft_row(const void* x, int32_t xtype, int64_t row0, int32_t W, uint32_t Ws, uint32_t q,
                               const sd_cf* twW) {
    sd_cf acc = sd_cf_zero();
    uint32_t iw = 0;
    for (int32_t w = 0; w < W; ++w) {
        acc = sd_rmac(acc, sd_load_real(x, xtype, row0 + w), twW[iw]);
        iw += q;
        if (iw >= Ws) iw -= Ws;
    }
    return acc;
}

/* Second stage: X[p, q] = scale * sum_{h < H} A[h, q] e^{-2 pi i p h / Hs}; A[h, q] at col[h * stride]. */
SD_HD inline sd_cf sd_dft_col(const sd_cf* col, int64_t stride, int32_t H, uint32_t Hs, uint32_t p, const sd_cf* twH,
                              float scale) {
    sd_cf acc = sd_cf_zero();
    uint32_t ih = 0;
    for (int32_t h = 0; h < H; ++h) {
        acc = sd_cmac(acc, col[h * stride], twH[ih]);
        ih += p;
        if (ih >= Hs) ih -= Hs;
    }
    return sd_cscale(acc, scale);
}

/* One coefficient of the spatial input's ortho rfft2, computed from the input itself (the streamed
 * input spectrum): the operations of sd_rfft_row + sd_dft_col in their order, so the same bits as the
 * dense path that stores the row pass and then runs the column DFT. plane0 = (s * C + c) * H * W. */
SD_HD inline sd_cf sd_rfft2_coeff(const void* x, int32_t xtype, int64_t plane0, int32_t H, int32_t W, uint32_t Hs,
                                  uint32_t Ws, uint32_t p, uint32_t q, const sd_cf* twH, const sd_cf* twW,
                                  float scale) {
    sd_cf acc = sd_cf_zero();
    uint32_t ih = 0;
    for (int32_t h = 0; h < H; ++h) {
        acc = sd_cmac(acc, sd_rfft_row(x, xtype, plane0 + (int64_t)h * W, W, Ws, q, twW), twH[ih]);
        ih += p;
        if (ih >= Hs) ih -= Hs;
    }
    return sd_cscale(acc, scale);
}

struct sd_conv_producer {
    static constexpr int OT = 8; /* output channels per tile (accumulators per thread) */
    int32_t C, O, Hs, Ws, Wh, F, k, in_domain, activation, has_bias;
    float bias_scale;
    const int32_t* xin; /* spectral: packed [B, lin.S] */
    sd_layout lin;
    const sd_cf* X;     /* spatial, dense: ortho spectrum [B, C, F] (workspace); null when streamed */
    const void* xs;     /* spatial, streamed: the input [B, C, H, W] of x_type */
    int32_t x_type, H, W;
    float fft_scale;
    const float* w;     /* [O, C, k, k] */
    const float* bias;  /* [O] or null */
    const sd_cf* twH;   /* Hs entries */
    const sd_cf* twW;   /* Ws entries */

    SD_HD inline sd_cf input(int32_t s, int32_t c, int32_t f) const {
        if (in_domain == SD_DOMAIN_SPECTRAL) {
            bool kept;
            return sd_packed_get(xin + (int64_t)s * lin.S, lin, c, f, &kept);
        }
        if (X == nullptr) {
            const uint32_t p = (uint32_t)(f / Wh);
            return sd_rfft2_coeff(xs, x_type, ((int64_t)s * C + c) * H * W, H, W, (uint32_t)Hs, (uint32_t)Ws, p,
                                  (uint32_t)(f - (int32_t)p * Wh), twH, twW, fft_scale);
        }
        return X[((int64_t)s * C + c) * F + f];
    }

    /* Y of channels o0 .. o0+no-1 at frequency f of sample s. KK > 0: k == KK known at compile time,
     * the 2k twiddles of this frequency kept in registers; KK == 0: any k, read from the tables. Both
     * perform the same operations in the same order (same bits). */
    template <int KK>
    SD_HD inline void eval_k(int32_t s, int32_t f, int32_t o0, int32_t no, sd_cf* v, bool* cand) const {
        const uint32_t p = (uint32_t)(f / Wh);
        const uint32_t q = (uint32_t)(f - (int32_t)p * Wh);
        sd_cf acc[OT];
        SD_UNROLL
        for (int j = 0; j < OT; ++j) acc[j] = sd_cf_zero();
        sd_cf tu[KK > 0 ? KK : 1], tv[KK > 0 ? KK : 1];
        if (KK > 0) {
            uint32_t iu = 0, iv = 0;
            SD_UNROLL
            for (int u = 0; u < (KK > 0 ? KK : 1); ++u) {
                tu[u] = twH[iu];
                tv[u] = twW[iv];
                iu += p;
                if (iu >= (uint32_t)Hs) iu -= (uint32_t)Hs;
                iv += q;
                if (iv >= (uint32_t)Ws) iv -= (uint32_t)Ws;
            }
        }
        const int64_t kk = (int64_t)k * k;
        for (int32_t c = 0; c < C; ++c) {
            const sd_cf x = input(s, c, f);
            if (x.re == 0.0f && x.im == 0.0f) continue; /* sparse input: a zero adds nothing */
            SD_UNROLL
            for (int j = 0; j < OT; ++j) {
                if (j < no) {
                    const float* wk = w + ((int64_t)(o0 + j) * C + c) * kk;
                    sd_cf K;
                    if (KK > 0)
                        K = sd_conv_kernel_coeff_fixed<(KK > 0 ? KK : 1)>(wk, tu, tv);
                    else
                        K = sd_conv_kernel_coeff(wk, k, p, q, (uint32_t)Hs, (uint32_t)Ws, twH, twW);
                    acc[j] = sd_cmac(acc[j], x, K);
                }
            }
        }
        SD_UNROLL
        for (int j = 0; j < OT; ++j) {
            if (f == 0 && has_bias && j < no) acc[j].re = sd_fadd(acc[j].re, sd_fmul(bias[o0 + j], bias_scale));
            v[j] = acc[j];
            cand[j] = j < no;
        }
    }

    SD_HD inline void eval(int32_t s, int32_t f, int32_t o0, int32_t no, sd_cf* v, bool* cand) const {
        switch (k) {
            case 1: eval_k<1>(s, f, o0, no, v, cand); break;
            case 3: eval_k<3>(s, f, o0, no, v, cand); break;
            case 5: eval_k<5>(s, f, o0, no, v, cand); break;
            default: eval_k<0>(s, f, o0, no, v, cand); break;
        }
    }

    SD_HD inline sd_cf finalize(sd_cf v) const {
        if (activation == SD_ACT_TANH) return sd_cf_make(tanhf(v.re), tanhf(v.im));
        return v;
    }

    SD_HD inline uint32_t in_overflowed(int32_t s) const {
        if (in_domain != SD_DOMAIN_SPECTRAL) return 0u;
        return sd_hdr_overflowed(xin + (int64_t)s * lin.S) != 0u ? 1u : 0u;
    }

    /* Header flags bit 0 (part tid of nthreads): the packed input's flag or a non-finite value in it;
     * for a spatial input, a non-finite value among the sample's C*H*W values. */
    SD_HD inline uint32_t in_flags_part(int32_t s, int32_t tid, int32_t nthreads) const {
        if (in_domain == SD_DOMAIN_SPECTRAL) return sd_row_nonfinite_part(xin + (int64_t)s * lin.S, lin, tid, nthreads);
        const int64_t n = (int64_t)C * H * W, base = (int64_t)s * n;
        uint32_t any = 0u;
        if (x_type == SD_FLOAT16) {
            const uint16_t* xh = (const uint16_t*)xs + base;
            for (int64_t i = tid; i < n; i += nthreads) any |= ((xh[i] & 0x7c00u) == 0x7c00u) ? 1u : 0u;
        } else {
            const float* xf = (const float*)xs + base;
            for (int64_t i = tid; i < n; i += nthreads) any |= ((sd_f2u(xf[i]) & 0x7f800000u) == 0x7f800000u) ? 1u : 0u;
        }
        return any;
    }
};

/* ---------------------------------------------------------------------------------------------- */
/* The hybrid block (activation RELU, DESIGN §2b), per chunk of samples x output channels (plan.h): */
/*   per kernel tap (u, v):                                                                          */
/*     G[o, (s, f)] = sum_c w[o, c, u, v] X[c, (s, f)]          one real GEMM (weights read in place)  */
/*     Y[o, f] += T_H(p, u) T_W(q, v) G[o, f]                    (+ bias on DC at the first tap)       */
/*   y = relu(irfft2(Y)), pooled, Z = rfft2(pooled): direct DFTs over twiddle tables, over Y's plane   */
/*   and a stage plane of F complex per (sample, channel) (spec_conv_host.cpp: which stage is where)  */
/* GEMM operands are fp32 (the GPU runs fp16 values' GEMMs on tensor cores as hi + lo fp16 pairs, */
/* spec_conv.cu hyb_split); everything after the GEMM is the same SD_HD code on host and device.    */
/* The split: hi = fp16(v), lo = fp16(v - hi); hi*hi + hi*lo + lo*hi keeps about 22 bits of each   */
/* product for |v| >= 2^-3 or so, fewer below (lo becomes an fp16 subnormal: about 16 bits at      */
/* |v| ~ 0.01, typical weights), so the GPU differs from the host's fp32 by summation order and a   */
/* rounding far inside DESIGN §7's relative 1e-3 of beta (the GPU tests hold it); scaling lo by     */
/* 2^11 into its own accumulator would restore the 22 bits.                                         */

/* (a * b) mod n for a, b < 2^31 */
SD_HD inline uint32_t sd_mulmod(uint32_t a, uint32_t b, uint32_t n) { return (uint32_t)(((uint64_t)a * b) % n); }

/* The twiddle of tap (u, v) at frequency (p, q): T_H(p, u) T_W(q, v) with T_H(p, u) = e^{-2 pi i p (u -
 * centre) / Hs}, T_W likewise (centre k//2: the centred kernel of a spectral input; 0: the zero-padded
 * full convolution of a spatial one). Hs, Ws > centre (plan: k <= Hs, Ws). */
SD_HD inline sd_cf sd_hyb_tap_twiddle(uint32_t p, uint32_t q, int32_t u, int32_t v, int32_t centre, uint32_t Hs,
                                      uint32_t Ws, const sd_cf* twH, const sd_cf* twW) {
    const uint32_t uu = ((uint32_t)u + Hs - (uint32_t)centre) % Hs, vv = ((uint32_t)v + Ws - (uint32_t)centre) % Ws;
    return sd_cmac(sd_cf_zero(), twH[sd_mulmod(p, uu, Hs)], twW[sd_mulmod(q, vv, Ws)]);
}

/* One tap's contribution to Y at (s, o, f): y (+)= T * (g[0], g[1]), the tap's GEMM product (re, im);
 * the first tap starts from the bias on DC (bias * sqrt(Hs*Ws), as the paper block) or zero. */
SD_HD inline sd_cf sd_hyb_accumulate(sd_cf y, int32_t tap, const float* g, sd_cf T, bool dc, const float* bias_o,
                                     float bias_scale) {
    if (tap == 0) y = sd_cf_make(dc && bias_o ? sd_fmul(*bias_o, bias_scale) : 0.0f, 0.0f);
    return sd_cmac(y, sd_cf_make(g[0], g[1]), T);
}

/* Inverse DFT along p: A[u, q] = sum_p Y[p, q] e^{+2 pi i p u / Hs} (Y, A: one plane [Hs][Wh]). */
SD_HD inline sd_cf sd_hyb_inv_col(const sd_cf* Y, int32_t Hs, int32_t Wh, uint32_t u, int32_t q, const sd_cf* twH) {
    sd_cf acc = sd_cf_zero();
    uint32_t ip = 0;
    for (int32_t p = 0; p < Hs; ++p) {
        acc = sd_cmac_conj(acc, Y[(int64_t)p * Wh + q], twH[ip]);
        ip += u;
        if (ip >= (uint32_t)Hs) ip -= (uint32_t)Hs;
    }
    return acc;
}

/* Inverse real DFT along q and ReLU: y[u, v] = max(0, scale * sum_q w_q Re(A[u, q] e^{+2 pi i q v / Ws})),
 * w_q = 1 for q = 0 and the Nyquist column (even Ws), else 2 (numpy/torch irfft: the imaginary parts
 * of those two columns are ignored). A: one row of Wh values. */
SD_HD inline float sd_hyb_inv_row(const sd_cf* A, int32_t Ws, int32_t Wh, uint32_t v, const sd_cf* twW, float scale) {
    float acc = 0.0f;
    uint32_t iq = 0;
    for (int32_t q = 0; q < Wh; ++q) {
        const sd_cf a = A[q];
        const sd_cf t = twW[iq];
        const float term = sd_fma(a.re, t.re, sd_fmul(a.im, t.im));
        const float wq = (q == 0 || 2 * q == Ws) ? 1.0f : 2.0f;
        acc = sd_fma(wq, term, acc);
        iq += v;
        if (iq >= (uint32_t)Ws) iq -= (uint32_t)Ws;
    }
    const float y = sd_fmul(acc, scale);
    return (y > 0.0f || y != y) ? y : 0.0f; /* ReLU; NaN passes (as numpy/torch), so the flag sees it */
}

/* The pooled map at (u2, v2): 2x2 window, stride 2, ceil mode, over the pixels that exist. */
SD_HD inline float sd_hyb_pooled(const float* sp, int32_t Hs, int32_t Ws, int32_t pool, int32_t u2, int32_t v2) {
    if (pool == SD_POOL_NONE) return sp[(int64_t)u2 * Ws + v2];
    const int32_t u = 2 * u2, v = 2 * v2;
    const bool u1 = u + 1 < Hs, v1 = v + 1 < Ws;
    const float* r0 = sp + (int64_t)u * Ws + v;
    float x = r0[0];
    if (pool == SD_POOL_MAX2) { /* a NaN in the window wins (torch's max pool), so the flag sees it */
        if (v1 && x == x && (r0[1] > x || r0[1] != r0[1])) x = r0[1];
        if (u1 && x == x && (r0[Ws] > x || r0[Ws] != r0[Ws])) x = r0[Ws];
        if (u1 && v1 && x == x && (r0[Ws + 1] > x || r0[Ws + 1] != r0[Ws + 1])) x = r0[Ws + 1];
        return x;
    }
    float n = 1.0f;
    if (v1) {
        x = sd_fadd(x, r0[1]);
        n = sd_fadd(n, 1.0f);
    }
    if (u1) {
        x = sd_fadd(x, r0[Ws]);
        n = sd_fadd(n, 1.0f);
    }
    if (u1 && v1) {
        x = sd_fadd(x, r0[Ws + 1]);
        n = sd_fadd(n, 1.0f);
    }
    return sd_fmul(x, n == 4.0f ? 0.25f : n == 2.0f ? 0.5f : 1.0f); /* 1/n is exact: n in {1, 2, 4} */
}

/* Forward DFT along v of the pooled map: B[u2, q2] = sum_v2 pooled(u2, v2) e^{-2 pi i q2 v2 / oWs}. */
SD_HD inline sd_cf sd_hyb_fwd_row(const float* sp, int32_t Hs, int32_t Ws, int32_t pool, int32_t oWs, int32_t u2,
                                  uint32_t q2, const sd_cf* twW2) {
    sd_cf acc = sd_cf_zero();
    uint32_t iv = 0;
    for (int32_t v2 = 0; v2 < oWs; ++v2) {
        acc = sd_rmac(acc, sd_hyb_pooled(sp, Hs, Ws, pool, u2, v2), twW2[iv]);
        iv += q2;
        if (iv >= (uint32_t)oWs) iv -= (uint32_t)oWs;
    }
    return acc;
}

/* Forward DFT along u2: Z[p2, q2] = scale * sum_u2 B[u2, q2] e^{-2 pi i p2 u2 / oHs} (B: plane [oHs][oWh]). */
SD_HD inline sd_cf sd_hyb_fwd_col(const sd_cf* Bq, int32_t oHs, int32_t oWh, uint32_t p2, int32_t q2,
                                  const sd_cf* twH2, float scale) {
    return sd_dft_col(Bq + q2, oWh, oHs, (uint32_t)oHs, p2, twH2, scale);
}

/* The pipeline's producer of the hybrid block: the chunk's Z, written by the chunk preparation
 * (spec_conv_host.cpp / spec_conv.cu) before the chunk's tiles into the first oF values of each
 * (sample, channel) plane of the Y buffer (plane stride F: every plane is finished by one CUDA block,
 * so no plane's Z may overlap another plane). Chunks start at multiples of sb samples and ot channels,
 * so (s % sb, o % ot) index the buffer. */
struct sd_hyb_producer {
    static constexpr int OT = 8;
    sd_conv_producer in; /* input access, flags */
    const sd_cf* Z;      /* [sb][ot][F], Z in the first oF of each plane */
    int32_t sb, ot, F;

    SD_HD inline void eval(int32_t s, int32_t f, int32_t o0, int32_t no, sd_cf* v, bool* cand) const {
        const sd_cf* z = Z + ((int64_t)(s % sb) * ot) * F + f;
        SD_UNROLL
        for (int j = 0; j < OT; ++j) {
            cand[j] = j < no;
            v[j] = j < no ? z[(int64_t)((o0 + j) % ot) * F] : sd_cf_zero();
        }
    }
    SD_HD inline sd_cf finalize(sd_cf v) const { return v; }
    SD_HD inline uint32_t in_overflowed(int32_t s) const { return in.in_overflowed(s); }
    SD_HD inline uint32_t in_flags_part(int32_t s, int32_t tid, int32_t nthreads) const {
        return in.in_flags_part(s, tid, nthreads);
    }
};

/* Host-side setup shared by both launchers: the producer and the pipeline over the workspace. */
inline void sd_conv_setup(const sd::ConvPlan& P, const void* x, const float* w, const float* b, int32_t* y,
                          void* workspace, sd_conv_producer* prod, sd_pipe* pipe) {
    unsigned char* base = sd::ws_base(workspace);
    sd_conv_producer pr;
    pr.C = P.C;
    pr.O = P.O;
    pr.Hs = P.Hs;
    pr.Ws = P.Ws;
    pr.Wh = P.Wh;
    pr.F = P.F;
    pr.k = P.k;
    pr.in_domain = P.in_domain;
    pr.activation = P.activation;
    pr.has_bias = P.has_bias;
    pr.bias_scale = P.bias_scale;
    pr.xin = P.in_domain == SD_DOMAIN_SPECTRAL ? (const int32_t*)x : nullptr;
    pr.lin = P.in;
    pr.X = P.in_domain == SD_DOMAIN_SPATIAL && !P.stream_in ? (const sd_cf*)(base + P.X) : nullptr;
    pr.xs = P.in_domain == SD_DOMAIN_SPATIAL ? x : nullptr;
    pr.x_type = P.x_type;
    pr.H = P.H;
    pr.W = P.W;
    pr.fft_scale = P.fft_scale;
    pr.w = w;
    pr.bias = P.has_bias ? b : nullptr;
    pr.twH = (const sd_cf*)(base + P.tw_h);
    pr.twW = (const sd_cf*)(base + P.tw_w);
    *prod = pr;
    *pipe = sd::make_pipe(P.pipe, base, P.B, P.out, y, 1, P.beta);
}

/* The hybrid producer over the same workspace (P.hyb). */
inline sd_hyb_producer sd_hyb_setup(const sd::ConvPlan& P, void* workspace, const sd_conv_producer& in) {
    sd_hyb_producer h;
    h.in = in;
    h.Z = (const sd_cf*)(sd::ws_base(workspace) + P.h_y);
    h.sb = P.hyb_sb;
    h.ot = P.hyb_ot;
    h.F = P.F;
    return h;
}

/* The prelude of both launchers (host C++): clears the message, plans into *P, checks the pointers and
 * the workspace, sets up the producer and the pipeline. *run is true when there is work (SD_OK, batch > 0). */
inline sd_status sd_conv_prepare(const sd_spec_conv_params* p, int32_t batch, const void* x, const float* w,
                                 const float* b, int32_t* y, void* workspace, size_t workspace_bytes, sd::ConvPlan* P,
                                 sd_conv_producer* prod, sd_pipe* pipe, bool* run) {
    *run = false;
    sd::clear_error();
    sd_status st = sd::plan_conv(p, batch, P);
    if (st != SD_OK) return st;
    if (batch == 0) return SD_OK;
    if ((st = sd::check_ptr("SpecConv", "x", x)) != SD_OK) return st;
    if ((st = sd::check_ptr("SpecConv", "w", w)) != SD_OK) return st;
    if (P->has_bias && (st = sd::check_ptr("SpecConv", "b", b)) != SD_OK) return st;
    if ((st = sd::check_ptr("SpecConv", "y", y)) != SD_OK) return st;
    if ((st = sd::check_workspace("SpecConv", workspace, workspace_bytes, P->ws_bytes)) != SD_OK) return st;
    sd_conv_setup(*P, x, w, b, y, workspace, prod, pipe);
    *run = true;
    return SD_OK;
}

#endif /* SPECDEPLOY_SPEC_CONV_H */
