/*
 * SpecPool per-element math (docs/ops.md), shared by spec_pool.cu and spec_pool_host.cpp.
 * Output (c, p', q') with q' <= out_Ws // 2 reads input (c, p, q') where p = p' for
 * p' < ceil(out_Hs / 2) and p = Hs - out_Hs + p' otherwise, times sqrt(out_Hs*out_Ws/(Hs*Ws)).
 * Kept-ness is inherited (the input mask bit); over capacity the grid (base 2^-10) applies to the
 * scaled value.
 */
#ifndef SPECDEPLOY_SPEC_POOL_H
#define SPECDEPLOY_SPEC_POOL_H

#include "specdeploy/complex_math.h"
#include "specdeploy/packed.h"
#include "specdeploy/pipeline.h"
#include "specdeploy/plan.h"
#include "specdeploy/specdeploy_c.h"
#include "specdeploy/status.h"

/* Input frequency index of output frequency f (output Hs' x Wh', input Hs x Wh). */
SD_HD inline int32_t sd_pool_source(int32_t f, int32_t Hs, int32_t Wh, int32_t oHs, int32_t oWh) {
    const int32_t pp = f / oWh;
    const int32_t q = f - pp * oWh;
    const int32_t p = pp < (oHs + 1) / 2 ? pp : Hs - oHs + pp;
    return p * Wh + q;
}

struct sd_pool_producer {
    static constexpr int OT = 4;
    const int32_t* xin; /* packed [B, lin.S] */
    sd_layout lin;
    int32_t Hs, Wh, oHs, oWh;
    float scale;

    SD_HD inline void eval(int32_t s, int32_t f, int32_t c0, int32_t nc, sd_cf* v, bool* cand) const {
        const int32_t fi = sd_pool_source(f, Hs, Wh, oHs, oWh);
        const int32_t* row = xin + (int64_t)s * lin.S;
        SD_UNROLL
        for (int j = 0; j < OT; ++j) {
            if (j < nc) {
                bool kept;
                const sd_cf z = sd_packed_get(row, lin, c0 + j, fi, &kept);
                v[j] = sd_cscale(z, scale);
                cand[j] = kept;
            }
        }
    }

    SD_HD inline sd_cf finalize(sd_cf v) const { return v; }

    SD_HD inline uint32_t in_overflowed(int32_t s) const {
        return sd_hdr_overflowed(xin + (int64_t)s * lin.S) != 0u ? 1u : 0u;
    }

    /* header flags bit 0: the input's flag or a non-finite value in it (part tid of nthreads) */
    SD_HD inline uint32_t in_flags_part(int32_t s, int32_t tid, int32_t nthreads) const {
        return sd_row_nonfinite_part(xin + (int64_t)s * lin.S, lin, tid, nthreads);
    }
};

inline void sd_pool_setup(const sd::PoolPlan& P, const int32_t* x, int32_t* y, void* workspace, sd_pool_producer* prod,
                          sd_pipe* pipe) {
    sd_pool_producer pr;
    pr.xin = x;
    pr.lin = P.in;
    pr.Hs = P.Hs;
    pr.Wh = P.Wh;
    pr.oHs = P.oHs;
    pr.oWh = P.oWh;
    pr.scale = P.scale;
    *prod = pr;
    *pipe = sd::make_pipe(P.pipe, sd::ws_base(workspace), P.B, P.out, y, 0, 0.0f);
}

/* The prelude of both launchers (host C++): clears the message, plans, checks the pointers and the
 * workspace, sets up the producer and the pipeline. *run is true when there is work (SD_OK, batch > 0). */
inline sd_status sd_pool_prepare(const sd_spec_pool_params* p, int32_t batch, const int32_t* x, int32_t* y,
                                 void* workspace, size_t workspace_bytes, sd_pool_producer* prod, sd_pipe* pipe,
                                 bool* run) {
    *run = false;
    sd::clear_error();
    sd::PoolPlan P;
    sd_status st = sd::plan_pool(p, batch, &P);
    if (st != SD_OK) return st;
    if (batch == 0) return SD_OK;
    if ((st = sd::check_ptr("SpecPool", "x", x)) != SD_OK) return st;
    if ((st = sd::check_ptr("SpecPool", "y", y)) != SD_OK) return st;
    if ((st = sd::check_workspace("SpecPool", workspace, workspace_bytes, P.ws_bytes)) != SD_OK) return st;
    sd_pool_setup(P, x, y, workspace, prod, pipe);
    *run = true;
    return SD_OK;
}

#endif /* SPECDEPLOY_SPEC_POOL_H */
