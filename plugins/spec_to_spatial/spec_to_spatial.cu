/* SpecToSpatial, CUDA library: one block per (sample, channel, tile of rows); the column pass stages
 * the tile's rows of A in shared memory, the row pass writes the spatial output. */
#include <cuda_runtime.h>

#include "spec_to_spatial.h"
#include "specdeploy/cuda_util.h"
#include "specdeploy/pipeline.cuh"
#include "specdeploy/status.h"

namespace {

__global__ void __launch_bounds__(128) k_to_spatial(const int32_t* x, sd_layout L, void* y, int32_t y_type, int32_t C,
                                                     int32_t Hs, int32_t Ws, int32_t Wh, int32_t RH, int32_t ntiles,
                                                     const sd_cf* twH, const sd_cf* twW, float scale) {
    extern __shared__ sd_cf sA[]; /* [RH][Wh] */
    const int64_t t = blockIdx.x;
    const int32_t tile = (int32_t)(t % ntiles);
    const int64_t plane = t / ntiles;
    const int32_t c = (int32_t)(plane % C);
    const int64_t s = plane / C;
    const int32_t h0 = tile * RH;
    const int32_t nh = (Hs - h0) < RH ? (Hs - h0) : RH;
    const int32_t* row = x + s * L.S;
    for (int32_t q = threadIdx.x; q < Wh; q += blockDim.x) sd_inv_col(row, L, c, q, Hs, Wh, h0, nh, twH, sA + q, Wh);
    __syncthreads();
    for (int32_t i = threadIdx.x; i < nh * Ws; i += blockDim.x) {
        const int32_t hl = i / Ws, w = i - (i / Ws) * Ws;
        sd_store_real(y, y_type, (plane * Hs + h0 + hl) * Ws + w, sd_inv_row(sA + (int64_t)hl * Wh, Ws, w, twW, scale));
    }
}

}  // namespace

extern "C" SD_API sd_status sd_spec_to_spatial_forward(const sd_spec_to_spatial_params* p, int32_t batch,
                                                       const int32_t* x, void* y, void* workspace,
                                                       size_t workspace_bytes, void* stream) {
    sd::ToSpatialPlan P;
    sd_cf* twH = nullptr;
    sd_cf* twW = nullptr;
    bool run;
    const sd_status st = sd_to_spatial_prepare(p, batch, x, y, workspace, workspace_bytes, &P, &twH, &twW, &run);
    if (st != SD_OK || !run) return st;
    cudaStream_t cs = (cudaStream_t)stream;
    cudaError_t e = sd_launch_twiddle(twH, P.Hs, cs);
    if (e == cudaSuccess) e = sd_launch_twiddle(twW, P.Ws, cs);
    if (e != cudaSuccess) return sd::cuda_fail("SpecToSpatial", e);
    const int32_t RH = sd_ts_rows(P.Wh);
    const int32_t ntiles = (P.Hs + RH - 1) / RH;
    const int64_t blocks = (int64_t)P.B * P.C * ntiles;
    if (blocks > 0x7fffffffLL) return sd::fail(SD_ERR_UNSUPPORTED, "SpecToSpatial: batch * C * ceil(Hs / %d) too large", RH);
    k_to_spatial<<<(unsigned)blocks, 128, (size_t)RH * P.Wh * sizeof(sd_cf), cs>>>(
        x, P.in, y, P.y_type, P.C, P.Hs, P.Ws, P.Wh, RH, ntiles, twH, twW, P.scale);
    e = cudaGetLastError();
    if (e != cudaSuccess) return sd::cuda_fail("SpecToSpatial", e);
    return SD_OK;
}
