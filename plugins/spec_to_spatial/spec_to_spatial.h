/*
 * SpecToSpatial per-element math, shared by spec_to_spatial.cu and spec_to_spatial_host.cpp:
 * y = irfft2(Z, s=(Hs, Ws), norm="ortho") exactly as numpy computes it for any half spectrum Z
 * (Hermitian or not): a full complex inverse DFT along the rows (axis 0), then a real inverse DFT
 * along the last axis that ignores the imaginary parts of column 0 and, for even Ws, of column Ws/2.
 *   A[h, q] = sum_p Z[p, q] e^{+2 pi i p h / Hs}
 *   y[h, w] = (Re A[h,0] + 2 sum_{1 <= q <= (Ws-1)/2} Re(A[h,q] e^{+2 pi i q w / Ws})
 *              + [Ws even] Re A[h, Ws/2] (-1)^w) / sqrt(Hs * Ws)
 * A block of rows h0 .. h0+nh-1 of one (sample, channel) is staged (nh * Wh complex); no buffer of the
 * whole spectrum exists.
 */
#ifndef SPECDEPLOY_SPEC_TO_SPATIAL_H
#define SPECDEPLOY_SPEC_TO_SPATIAL_H

#include "specdeploy/complex_math.h"
#include "specdeploy/packed.h"
#include "specdeploy/plan.h"
#include "specdeploy/specdeploy_c.h"
#include "specdeploy/status.h"

#define SD_TS_ROWS 8 /* rows per tile (accumulators per thread in the column pass) */

/* Rows h0 .. h0+nh-1 (nh <= SD_TS_ROWS) of A at column q of channel c; out[hl * stride]. */
SD_HD inline void sd_inv_col(const int32_t* row, const sd_layout& L, int32_t c, int32_t q, int32_t Hs, int32_t Wh,
                             int32_t h0, int32_t nh, const sd_cf* twH, sd_cf* out, int64_t stride) {
    sd_cf acc[SD_TS_ROWS];
    SD_UNROLL
    for (int hl = 0; hl < SD_TS_ROWS; ++hl) acc[hl] = sd_cf_zero();
    for (int32_t p = 0; p < Hs; ++p) {
        bool kept;
        const sd_cf z = sd_packed_get(row, L, c, p * Wh + q, &kept);
        if (!kept) continue;
        uint32_t ih = (uint32_t)(((uint64_t)p * (uint64_t)h0) % (uint64_t)Hs); /* (p * h) mod Hs */
        SD_UNROLL
        for (int hl = 0; hl < SD_TS_ROWS; ++hl) {
            if (hl < nh) {
                acc[hl] = sd_cmac_conj(acc[hl], z, twH[ih]);
                ih += (uint32_t)p;
                if (ih >= (uint32_t)Hs) ih -= (uint32_t)Hs;
            }
        }
    }
    SD_UNROLL
    for (int hl = 0; hl < SD_TS_ROWS; ++hl)
        if (hl < nh) out[hl * stride] = acc[hl];
}

/* y[h, w] from the staged row A[h, 0 .. Wh-1]. */
SD_HD inline float sd_inv_row(const sd_cf* A, int32_t Ws, int32_t w, const sd_cf* twW, float scale) {
    float sum = 0.0f;
    uint32_t iq = (uint32_t)w; /* (q * w) mod Ws for q = 1 */
    const int32_t qmax = (Ws - 1) / 2;
    for (int32_t q = 1; q <= qmax; ++q) {
        /* Re(A e^{+i theta}) with twW = (cos theta, -sin theta) */
        sum = sd_fma(A[q].re, twW[iq].re, sd_fma(A[q].im, twW[iq].im, sum));
        iq += (uint32_t)w;
        if (iq >= (uint32_t)Ws) iq -= (uint32_t)Ws;
    }
    float acc = sd_fma(2.0f, sum, A[0].re);
    if ((Ws & 1) == 0) {
        const float nyq = A[Ws / 2].re;
        acc = sd_fadd(acc, (w & 1) ? -nyq : nyq);
    }
    return sd_fmul(acc, scale);
}

SD_HD inline void sd_store_real(void* y, int32_t type, int64_t i, float v) {
    if (type == SD_FLOAT16)
        ((uint16_t*)y)[i] = sd_f32_to_f16(v);
    else
        ((float*)y)[i] = v;
}

/* Rows per tile for the shared-memory budget of the CUDA kernel (48 KiB); the host uses the same. */
inline int32_t sd_ts_rows(int32_t Wh) {
    int64_t nh = 49152 / ((int64_t)Wh * (int64_t)sizeof(sd_cf));
    if (nh > SD_TS_ROWS) nh = SD_TS_ROWS;
    if (nh < 1) nh = 1; /* Ws <= 8192 (plan): Wh * 8 <= 32 KiB */
    return (int32_t)nh;
}

/* The prelude of both launchers (host C++): clears the message, plans into *P, checks the pointers and
 * the workspace, locates the twiddle tables (Hs, Ws entries) in it. *run is true when there is work
 * (SD_OK, batch > 0). */
inline sd_status sd_to_spatial_prepare(const sd_spec_to_spatial_params* p, int32_t batch, const int32_t* x, void* y,
                                       void* workspace, size_t workspace_bytes, sd::ToSpatialPlan* P, sd_cf** twH,
                                       sd_cf** twW, bool* run) {
    *run = false;
    sd::clear_error();
    sd_status st = sd::plan_to_spatial(p, batch, P);
    if (st != SD_OK) return st;
    if (batch == 0) return SD_OK;
    if ((st = sd::check_ptr("SpecToSpatial", "x", x)) != SD_OK) return st;
    if ((st = sd::check_ptr("SpecToSpatial", "y", y)) != SD_OK) return st;
    if ((st = sd::check_workspace("SpecToSpatial", workspace, workspace_bytes, P->ws_bytes)) != SD_OK) return st;
    unsigned char* base = sd::ws_base(workspace);
    *twH = (sd_cf*)(base + P->tw_h);
    *twW = (sd_cf*)(base + P->tw_w);
    *run = true;
    return SD_OK;
}

#endif /* SPECDEPLOY_SPEC_TO_SPATIAL_H */
