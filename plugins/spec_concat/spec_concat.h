/*
 * SpecConcat per-element math (docs/ops.md), shared by spec_concat.cu and spec_concat_host.cpp.
 * Output channel c comes from input i with c_start[i] <= c < c_start[i+1]; the coefficient is copied
 * (decoded to fp32 and encoded again, exact for both value dtypes); kept-ness is inherited, over
 * capacity the grid (base 2^-10) applies; overflowed = OR of the inputs' flags and the op's own.
 */
#ifndef SPECDEPLOY_SPEC_CONCAT_H
#define SPECDEPLOY_SPEC_CONCAT_H

#include "specdeploy/complex_math.h"
#include "specdeploy/packed.h"
#include "specdeploy/pipeline.h"
#include "specdeploy/plan.h"
#include "specdeploy/specdeploy_c.h"
#include "specdeploy/status.h"

struct sd_concat_producer {
    static constexpr int OT = 4;
    int32_t n, F, vdt;
    const int32_t* xs[SD_MAX_CONCAT_INPUTS]; /* device (or host) pointers to each input [B, S_i] */
    int32_t C[SD_MAX_CONCAT_INPUTS];
    int32_t cap[SD_MAX_CONCAT_INPUTS];
    int32_t c_start[SD_MAX_CONCAT_INPUTS + 1];

    SD_HD inline void eval(int32_t s, int32_t f, int32_t c0, int32_t nc, sd_cf* v, bool* cand) const {
        int32_t i = 0;
        SD_UNROLL
        for (int j = 0; j < OT; ++j) {
            if (j < nc) {
                const int32_t c = c0 + j;
                while (c >= c_start[i + 1]) ++i; /* channels of a tile ascend */
                const sd_layout L = sd_make_layout(C[i], F, cap[i], vdt);
                bool kept;
                v[j] = sd_packed_get(xs[i] + (int64_t)s * L.S, L, c - c_start[i], f, &kept);
                cand[j] = kept;
            }
        }
    }

    SD_HD inline sd_cf finalize(sd_cf v) const { return v; }

    SD_HD inline uint32_t in_overflowed(int32_t s) const {
        uint32_t any = 0u;
        for (int32_t i = 0; i < n; ++i) {
            const int64_t S = sd_row_words(C[i], F, cap[i], vdt);
            any |= sd_hdr_overflowed(xs[i] + (int64_t)s * S) != 0u ? 1u : 0u;
        }
        return any;
    }

    /* header flags bit 0: any input's flag or a non-finite value in any input (part tid of nthreads) */
    SD_HD inline uint32_t in_flags_part(int32_t s, int32_t tid, int32_t nthreads) const {
        uint32_t any = 0u;
        for (int32_t i = 0; i < n; ++i) {
            const sd_layout L = sd_make_layout(C[i], F, cap[i], vdt);
            any |= sd_row_nonfinite_part(xs[i] + (int64_t)s * L.S, L, tid, nthreads);
        }
        return any;
    }
};

inline void sd_concat_setup(const sd::ConcatPlan& P, const int32_t* const* xs, int32_t* y, void* workspace,
                            sd_concat_producer* prod, sd_pipe* pipe) {
    sd_concat_producer pr;
    pr.n = P.n;
    pr.F = P.F;
    pr.vdt = P.vdt;
    for (int32_t i = 0; i < SD_MAX_CONCAT_INPUTS; ++i) {
        pr.xs[i] = i < P.n ? xs[i] : nullptr;
        pr.C[i] = i < P.n ? P.C[i] : 0;
        pr.cap[i] = i < P.n ? P.in[i].cap : 0;
    }
    for (int32_t i = 0; i <= SD_MAX_CONCAT_INPUTS; ++i) pr.c_start[i] = i <= P.n ? P.c_start[i] : P.Cout;
    *prod = pr;
    *pipe = sd::make_pipe(P.pipe, sd::ws_base(workspace), P.B, P.out, y, 0, 0.0f);
}

/* xs is a host array of n pointers; each must be non-null. */
inline sd_status sd_concat_check_inputs(const sd::ConcatPlan& P, const int32_t* const* xs) {
    sd_status st = sd::check_ptr("SpecConcat", "xs", xs);
    if (st != SD_OK) return st;
    for (int32_t i = 0; i < P.n; ++i)
        if (xs[i] == nullptr)
            return sd::fail(SD_ERR_INVALID_ARGUMENT, "SpecConcat: input pointer xs[%d] is NULL", i);
    return SD_OK;
}

/* The prelude of both launchers (host C++): clears the message, plans, checks the pointers and the
 * workspace, sets up the producer and the pipeline. *run is true when there is work (SD_OK, batch > 0). */
inline sd_status sd_concat_prepare(const sd_spec_concat_params* p, int32_t batch, const int32_t* const* xs, int32_t* y,
                                   void* workspace, size_t workspace_bytes, sd_concat_producer* prod, sd_pipe* pipe,
                                   bool* run) {
    *run = false;
    sd::clear_error();
    sd::ConcatPlan P;
    sd_status st = sd::plan_concat(p, batch, &P);
    if (st != SD_OK) return st;
    if (batch == 0) return SD_OK;
    if ((st = sd_concat_check_inputs(P, xs)) != SD_OK) return st;
    if ((st = sd::check_ptr("SpecConcat", "y", y)) != SD_OK) return st;
    if ((st = sd::check_workspace("SpecConcat", workspace, workspace_bytes, P.ws_bytes)) != SD_OK) return st;
    sd_concat_setup(P, xs, y, workspace, prod, pipe);
    *run = true;
    return SD_OK;
}

#endif /* SPECDEPLOY_SPEC_CONCAT_H */
