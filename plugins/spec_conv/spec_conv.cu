/* SpecConv, CUDA library: twiddle tables, the spatial rfft2 (first layer), and the packed-output
 * pipeline (common/include/specdeploy/pipeline.cuh) over sd_conv_producer. */
#include <cuda_runtime.h>

#include "spec_conv.h"
#include "specdeploy/cuda_util.h"
#include "specdeploy/pipeline.cuh"
#include "specdeploy/status.h"

namespace {

/* A[h, q] for every (plane, h < H, q < Wh), stored in rows 0..H-1 of the plane's Hs x Wh spectrum. */
__global__ void k_rfft_rows(const void* x, int32_t xtype, sd_cf* X, int64_t total, int32_t H, int32_t W, int32_t Ws,
                            int32_t Wh, int32_t F, const sd_cf* twW) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    const int32_t q = (int32_t)(idx % Wh);
    const int64_t t = idx / Wh;
    const int32_t h = (int32_t)(t % H);
    const int64_t plane = t / H;
    X[plane * F + (int64_t)h * Wh + q] = sd_rfft_row(x, xtype, (plane * H + h) * W, W, (uint32_t)Ws, (uint32_t)q, twW);
}

/* Column DFT in place: one block per (plane, group of QG columns); the H input rows of its columns
 * are staged in shared memory before the Hs output rows overwrite them. */
__global__ void k_rfft_cols(sd_cf* X, int32_t H, int32_t Hs, int32_t Wh, int32_t F, int32_t QG, int32_t ngroups,
                            const sd_cf* twH, float scale) {
    extern __shared__ sd_cf sA[]; /* [H][QG] */
    const int64_t t = blockIdx.x;
    const int32_t g = (int32_t)(t % ngroups);
    const int64_t plane = t / ngroups;
    const int32_t q0 = g * QG;
    const int32_t nq = (Wh - q0) < QG ? (Wh - q0) : QG;
    sd_cf* Xp = X + plane * F;
    for (int32_t i = threadIdx.x; i < H * nq; i += blockDim.x) {
        const int32_t h = i / nq, ql = i - (i / nq) * nq;
        sA[h * QG + ql] = Xp[(int64_t)h * Wh + q0 + ql];
    }
    __syncthreads();
    for (int32_t i = threadIdx.x; i < Hs * nq; i += blockDim.x) {
        const int32_t p = i / nq, ql = i - (i / nq) * nq;
        Xp[(int64_t)p * Wh + q0 + ql] = sd_dft_col(sA + ql, QG, H, (uint32_t)Hs, (uint32_t)p, twH, scale);
    }
}

}  // namespace

extern "C" SD_API sd_status sd_spec_conv_forward(const sd_spec_conv_params* p, int32_t batch, const void* x,
                                                 const float* w, const float* b, int32_t* y, void* workspace,
                                                 size_t workspace_bytes, void* stream) {
    sd::ConvPlan P;
    sd_conv_producer prod;
    sd_pipe pipe;
    bool run;
    const sd_status st = sd_conv_prepare(p, batch, x, w, b, y, workspace, workspace_bytes, &P, &prod, &pipe, &run);
    if (st != SD_OK || !run) return st;
    cudaStream_t cs = (cudaStream_t)stream;
    cudaError_t e = sd_launch_twiddle(const_cast<sd_cf*>(prod.twH), P.Hs, cs);
    if (e == cudaSuccess) e = sd_launch_twiddle(const_cast<sd_cf*>(prod.twW), P.Ws, cs);
    if (e != cudaSuccess) return sd::cuda_fail("SpecConv", e);

    if (P.in_domain == SD_DOMAIN_SPATIAL && !P.stream_in) {
        sd_cf* X = const_cast<sd_cf*>(prod.X);
        const int64_t total = (int64_t)P.B * P.C * P.H * P.Wh;
        k_rfft_rows<<<(unsigned)((total + 255) / 256), 256, 0, cs>>>(x, P.x_type, X, total, P.H, P.W, P.Ws, P.Wh, P.F,
                                                                   prod.twW);
        int32_t QG = (int32_t)(49152 / ((int64_t)P.H * sizeof(sd_cf)));
        if (QG > 8) QG = 8;
        if (QG < 1) QG = 1; /* H <= 4096 (plan) keeps H * 8 bytes <= 32 KiB */
        const int32_t ngroups = (P.Wh + QG - 1) / QG;
        const int64_t blocks = (int64_t)P.B * P.C * ngroups;
        k_rfft_cols<<<(unsigned)blocks, 128, (size_t)P.H * QG * sizeof(sd_cf), cs>>>(X, P.H, P.Hs, P.Wh, P.F, QG, ngroups,
                                                                                   prod.twH, P.fft_scale);
        e = cudaGetLastError();
        if (e != cudaSuccess) return sd::cuda_fail("SpecConv", e);
    }
    e = sd_launch_pipeline(prod, pipe, cs);
    if (e != cudaSuccess) return sd::cuda_fail("SpecConv", e);
    return SD_OK;
}
