/* SpecConv, CUDA library: twiddle tables, the spatial rfft2 (first layer), and the packed-output
 * pipeline (common/include/specdeploy/pipeline.cuh) over sd_conv_producer. */
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

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

/* ---------------------------------------------------------------------------------------------- */
/* The hybrid block (activation RELU): chunk preparation kernels and the GEMM (spec_conv.h).        */
/* Every kernel takes the pipeline `a` and the pass `mode` and skips the samples that do not take   */
/* part in the pass (refine/recount run only for samples that overflowed), so the rare passes cost  */
/* almost nothing when no sample overflowed: the host cannot know without a sync, and there is none. */

struct HybArgs {
    sd_conv_producer in;
    sd_pipe a;
    sd::ConvPlan P;               /* sizes, chunk (hyb_sb x hyb_ot), centre, gemm_split, pool, scales */
    int32_t mode, s0, ns, o0, no; /* chunk: samples s0.., channels o0.. */
    const float* w;
    const float* bias;
    sd_cf* Y; /* spectrum, then the spatial map, then Z (plane stride F; spec_conv_host.cpp) */
    sd_cf* A; /* inverse column stage, then the forward row stage; null: in shared memory (plan.h) */
    const sd_cf* twH2;
    const sd_cf* twW2;
};

__device__ __forceinline__ bool hyb_wants(const HybArgs& h, int32_t sl) {
    return sl < h.ns && sd_pass_wants(h.a, h.mode, h.s0 + sl);
}

/* The GEMM's A operand in place: w[o0 + m, c, tap] (no weight tile in the workspace). */
__device__ __forceinline__ float hyb_weight(const HybArgs& h, int32_t m, int32_t c, int32_t tap) {
    const int64_t kk = (int64_t)h.P.k * h.P.k;
    return h.w[((int64_t)(h.o0 + m) * h.P.C + c) * kk + tap];
}

/* The GEMM's B operand in place: column pair (n, n + 1), n even, is X[c, (sl, f)] = (re, im) of the
 * chunk's sample sl at frequency f, n = (sl * F + f) * 2 (zero for a sample that skips the pass). The
 * host builds the same values into its input tile (spec_conv_host.cpp). */
__device__ __forceinline__ sd_cf hyb_input_at(const HybArgs& h, int32_t c, int32_t n) {
    const int32_t sl = n / (2 * h.P.F);
    const int32_t f = (n - sl * 2 * h.P.F) >> 1;
    return hyb_wants(h, sl) ? h.in.input(h.s0 + sl, c, f) : sd_cf_zero();
}

/* The GEMM epilogue: tap `tap`'s product (re, im) at row m (channel o0 + m) and columns (n, n + 1)
 * (n even: sample sl, frequency f as above) accumulated into Y, as the host's loop does with its G
 * (spec_conv_host.cpp): same function, same tap order. */
__device__ __forceinline__ void hyb_accum_at(const HybArgs& h, int32_t tap, int32_t m, int32_t n, float re, float im) {
    const int32_t sl = n / (2 * h.P.F);
    const int32_t f = (n - sl * 2 * h.P.F) >> 1;
    if (!hyb_wants(h, sl)) return;
    const uint32_t p = (uint32_t)(f / h.P.Wh), q = (uint32_t)(f - (int32_t)p * h.P.Wh);
    const int32_t u = tap / h.P.k, v = tap - u * h.P.k;
    const sd_cf T = sd_hyb_tap_twiddle(p, q, u, v, h.P.centre, (uint32_t)h.P.Hs, (uint32_t)h.P.Ws, h.in.twH, h.in.twW);
    const float g[2] = {re, im};
    sd_cf* y = h.Y + ((int64_t)sl * h.P.hyb_ot + m) * h.P.F + f;
    *y = sd_hyb_accumulate(*y, tap, g, T, f == 0, h.bias ? h.bias + h.o0 + m : nullptr, h.P.bias_scale);
}

/* The hi + lo fp16 pair of an fp32 operand (spec_conv.h: hi = fp16(v), lo = fp16(v - hi)). */
__device__ __forceinline__ void hyb_split(float v, __half* hi, __half* lo) {
    const uint16_t h16 = sd_f32_to_f16(v);
    *hi = __ushort_as_half(h16);
    *lo = __ushort_as_half(sd_f32_to_f16(sd_fadd(v, -sd_f16_to_f32(h16))));
}

/* Y (+)= sum_tap T_tap * (W_tap X) over all N = ns * 2 * F columns of the chunk (every frequency in one
 * launch), W_tap[M][K] = w[o0 + m, c, tap], X read in place (hyb_input_at: the packed input decoded,
 * the dense spatial spectrum, or the streamed one recomputed, as the paper block's tiles read it;
 * no input tile in the workspace). fp16 values: each operand is a hi + lo pair of fp16 values (split
 * as it is loaded), and the product is hi*hi + hi*lo + lo*hi on the tensor cores (WMMA 16x16x16, fp32
 * accumulation): about fp32 precision at 3 MMAs per step. A 64x64 tile per block of 4 warps (2x2 warps
 * of 2x2 fragments); the taps run inside the kernel (the input is decoded once per tap and K step, or
 * once for all taps when C fits one K step: every first layer, whose streamed input is costly),
 * each tap's product goes through the warp's staging tile into the epilogue (hyb_accum_at): a (re, im)
 * pair sits in adjacent columns of one fragment, and every tap's epilogue of a pair runs on the same
 * lane, so Y's read-modify-write needs no synchronisation and sums the taps in order. The host sums
 * the same products in fp32 in c order: this split path differs from it by summation order and the
 * split's rounding (DESIGN §7: masks agree up to a relative 1e-3 of beta); the fp32 path below is
 * bitwise equal. M (channels of the chunk, up to O) fills the 64-row tile when the chunk has >= 64
 * channels; smaller chunks pad it. */
constexpr int kGT = 64, kGK = 32;

/* Does a sample of the block's columns [n0, n0 + kGT) take part in the pass? (uniform over the block) */
__device__ __forceinline__ bool hyb_cols_any(const HybArgs& h, int32_t n0, int32_t N) {
    const int32_t last = (n0 + kGT < N ? n0 + kGT : N) - 1;
    for (int32_t sl = n0 / (2 * h.P.F); sl <= last / (2 * h.P.F); ++sl)
        if (hyb_wants(h, sl)) return true;
    return false;
}

__global__ void __launch_bounds__(128) k_hyb_gemm_f16(const __grid_constant__ HybArgs h, int32_t M, int32_t N, int32_t K) {
    using namespace nvcuda;
    __shared__ __align__(32) __half As[2][kGT][kGK + 8]; /* [hi, lo] */
    __shared__ __align__(32) __half Bs[2][kGK][kGT + 8];
    __shared__ __align__(32) float Cs[4][16][16 + 4];
    const int32_t m0 = blockIdx.y * kGT, n0 = blockIdx.x * kGT;
    if (!hyb_cols_any(h, n0, N)) return;
    const bool b_once = K <= kGK; /* one K step: the input is loaded (decoded) once for every tap */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    const int32_t kk = h.P.k * h.P.k;
    for (int32_t tap = 0; tap < kk; ++tap) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
        for (int32_t k0 = 0; k0 < K; k0 += kGK) {
            for (int i = threadIdx.x; i < kGT * kGK; i += blockDim.x) {
                const int r = i / kGK, c = i % kGK;
                const int32_t gm = m0 + r, gk = k0 + c;
                const float v = (gm < M && gk < K) ? hyb_weight(h, gm, gk, tap) : 0.0f;
                hyb_split(v, &As[0][r][c], &As[1][r][c]);
            }
            for (int i = threadIdx.x; i < kGK * kGT / 2 && (!b_once || tap == 0); i += blockDim.x) { /* (re, im) pairs */
                const int r = i / (kGT / 2), c = (i % (kGT / 2)) * 2;
                const int32_t gk = k0 + r, gn = n0 + c; /* n0, c even: gn is a pair's re column */
                const sd_cf x = (gk < K && gn < N) ? hyb_input_at(h, gk, gn) : sd_cf_zero();
                hyb_split(x.re, &Bs[0][r][c], &Bs[1][r][c]);
                hyb_split(x.im, &Bs[0][r][c + 1], &Bs[1][r][c + 1]);
            }
            __syncthreads();
#pragma unroll
            for (int ks = 0; ks < kGK; ks += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa[2][2]; /* [hi/lo][i] */
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fb[2][2]; /* [hi/lo][j] */
#pragma unroll
                for (int p = 0; p < 2; ++p)
#pragma unroll
                    for (int i = 0; i < 2; ++i) {
                        wmma::load_matrix_sync(fa[p][i], &As[p][wm + 16 * i][ks], kGK + 8);
                        wmma::load_matrix_sync(fb[p][i], &Bs[p][ks][wn + 16 * i], kGT + 8);
                    }
#pragma unroll
                for (int i = 0; i < 2; ++i)
#pragma unroll
                    for (int j = 0; j < 2; ++j) {
                        wmma::mma_sync(acc[i][j], fa[1][i], fb[0][j], acc[i][j]); /* small terms first */
                        wmma::mma_sync(acc[i][j], fa[0][i], fb[1][j], acc[i][j]);
                        wmma::mma_sync(acc[i][j], fa[0][i], fb[0][j], acc[i][j]);
                    }
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                wmma::store_matrix_sync(&Cs[warp][0][0], acc[i][j], 16 + 4, wmma::mem_row_major);
                __syncwarp();
                for (int e = lane; e < 128; e += 32) { /* 16 rows x 8 (re, im) pairs */
                    const int r = e >> 3, c = (e & 7) * 2;
                    const int32_t gm = m0 + wm + 16 * i + r, gn = n0 + wn + 16 * j + c;
                    if (gm < M && gn < N) hyb_accum_at(h, tap, gm, gn, Cs[warp][r][c], Cs[warp][r][c + 1]);
                }
                __syncwarp();
            }
    }
}

/* The same with fp32 operands (value_dtype fp32): SIMT, 64x64 tile, 4x4 outputs per thread, staged
 * through shared memory for the epilogue (a thread's outputs are not (re, im) pairs); every tap's
 * epilogue of a pair runs on the same thread. */
__global__ void __launch_bounds__(256) k_hyb_gemm_f32(const __grid_constant__ HybArgs h, int32_t M, int32_t N, int32_t K) {
    __shared__ float As[16][kGT + 1];
    __shared__ float Bs[16][kGT];
    __shared__ float Cs[kGT][kGT + 1];
    const int32_t m0 = blockIdx.y * kGT, n0 = blockIdx.x * kGT;
    if (!hyb_cols_any(h, n0, N)) return;
    const bool b_once = K <= 16; /* one K step: the input is loaded (decoded) once for every tap */
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const int32_t kk = h.P.k * h.P.k;
    for (int32_t tap = 0; tap < kk; ++tap) {
        float acc[4][4] = {};
        for (int32_t k0 = 0; k0 < K; k0 += 16) {
            for (int i = threadIdx.x; i < 16 * kGT; i += 256) {
                const int r = i / 16, c = i % 16; /* As[k][m] = w[o0 + m0 + r, k0 + c, tap] */
                const int32_t gm = m0 + r, gk = k0 + c;
                As[c][r] = (gm < M && gk < K) ? hyb_weight(h, gm, gk, tap) : 0.0f;
            }
            for (int i = threadIdx.x; i < 16 * kGT / 2 && (!b_once || tap == 0); i += 256) { /* (re, im) pairs */
                const int rb = i / (kGT / 2), cb = (i % (kGT / 2)) * 2;
                const int32_t gk2 = k0 + rb, gn = n0 + cb;
                const sd_cf x = (gk2 < K && gn < N) ? hyb_input_at(h, gk2, gn) : sd_cf_zero();
                Bs[rb][cb] = x.re;
                Bs[rb][cb + 1] = x.im;
            }
            __syncthreads();
#pragma unroll
            for (int ks = 0; ks < 16; ++ks) {
                float av[4], bv[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) av[i] = As[ks][ty + 16 * i];
#pragma unroll
                for (int j = 0; j < 4; ++j) bv[j] = Bs[ks][tx + 16 * j];
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] = __fmaf_rn(av[i], bv[j], acc[i][j]);
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) Cs[ty + 16 * i][tx + 16 * j] = acc[i][j];
        __syncthreads();
        for (int e = threadIdx.x; e < kGT * kGT / 2; e += 256) { /* 64 rows x 32 (re, im) pairs */
            const int r = e / (kGT / 2), c = (e % (kGT / 2)) * 2;
            const int32_t gm = m0 + r, gn = n0 + c;
            if (gm < M && gn < N) hyb_accum_at(h, tap, gm, gn, Cs[r][c], Cs[r][c + 1]);
        }
        __syncthreads();
    }
}

/* The spatial step of the chunk (spec_conv_host.cpp, same stages and order): one block per (sl, ol)
 * plane, its threads striding over each stage's outputs, a barrier between stages (each stage reads
 * the whole plane the previous one wrote): Y -> A (inverse columns), A -> Y (ReLU'd spatial map),
 * Y -> A (pooled forward rows), A -> Y (Z, the first oF values of the plane). Y is the plane in the
 * workspace; the stage plane A is the block's shared memory for F <= kHybSmemMaxF (half the workspace
 * of two planes), else a second workspace plane (the plan says which: h.A null or not). One launch
 * instead of four. */
constexpr int kHybSpatialMaxThreads = 1024;
static_assert(sd::kHybSmemMaxF * sizeof(sd_cf) <= 48 * 1024,
              "the stage plane must fit the default dynamic shared memory of a block (no opt-in attribute)");
/* threads per plane: 256, or 1024 for planes of more than 1024 coefficients (fewer serial steps per
 * thread where a chunk has few planes; the per-element kernels this replaced spread a large plane over
 * many blocks, which a 224 x 224 map would still prefer: measure before tuning further) */
inline int hyb_spatial_threads(int32_t F) { return F > 1024 ? kHybSpatialMaxThreads : 256; }

__global__ void __launch_bounds__(kHybSpatialMaxThreads) k_hyb_spatial(const __grid_constant__ HybArgs h) {
    const int32_t ol = (int32_t)(blockIdx.x % (unsigned)h.no), sl = (int32_t)(blockIdx.x / (unsigned)h.no);
    if (!hyb_wants(h, sl)) return; /* uniform over the block */
    extern __shared__ sd_cf s_stage[]; /* F complex when h.A is null (F <= kHybSmemMaxF) */
    const int64_t pl = (int64_t)sl * h.P.hyb_ot + ol;
    sd_cf* Y = h.Y + pl * h.P.F;
    sd_cf* A = h.A ? h.A + pl * h.P.F : s_stage;
    float* sp = (float*)Y;
    const int64_t t = threadIdx.x, nt = blockDim.x; /* 64-bit: Hs * Ws may come close to 2^31 */
    for (int64_t e = t; e < h.P.F; e += nt) {
        const int32_t u = (int32_t)(e / h.P.Wh), q = (int32_t)(e - (int64_t)u * h.P.Wh);
        A[e] = sd_hyb_inv_col(Y, h.P.Hs, h.P.Wh, (uint32_t)u, q, h.in.twH);
    }
    __syncthreads();
    for (int64_t e = t; e < (int64_t)h.P.Hs * h.P.Ws; e += nt) {
        const int32_t u = (int32_t)(e / h.P.Ws), v = (int32_t)(e - (int64_t)u * h.P.Ws);
        sp[e] = sd_hyb_inv_row(A + (int64_t)u * h.P.Wh, h.P.Ws, h.P.Wh, (uint32_t)v, h.in.twW, h.P.fft_scale);
    }
    __syncthreads();
    for (int64_t e = t; e < (int64_t)h.P.oHs * h.P.oWh; e += nt) {
        const int32_t u2 = (int32_t)(e / h.P.oWh), q2 = (int32_t)(e - (int64_t)u2 * h.P.oWh);
        A[e] = sd_hyb_fwd_row(sp, h.P.Hs, h.P.Ws, h.P.pool, h.P.oWs, u2, (uint32_t)q2, h.twW2);
    }
    __syncthreads();
    for (int64_t e = t; e < h.P.oF; e += nt) {
        const int32_t p2 = (int32_t)(e / h.P.oWh), q2 = (int32_t)(e - (int64_t)p2 * h.P.oWh);
        Y[e] = sd_hyb_fwd_col(A, h.P.oHs, h.P.oWh, (uint32_t)p2, q2, h.twH2, h.P.out_scale);
    }
}

/* The chunk preparation of the hybrid pipeline: enqueues the kernels above for one chunk. */
struct DevHybPrep {
    HybArgs base;
    cudaStream_t st;

    cudaError_t operator()(int mode, const sd_tile_range& r) const {
        HybArgs h = base;
        h.mode = mode;
        h.s0 = r.s0;
        h.ns = r.ns;
        h.o0 = r.og0 * sd_conv_producer::OT;
        h.no = (h.a.Cout - h.o0) < h.P.hyb_ot ? (h.a.Cout - h.o0) : h.P.hyb_ot;
        const int32_t M = h.no, N = h.ns * 2 * h.P.F; /* plan: sb * 2 * F <= 2^31 - 1 */
        const int64_t planes = (int64_t)h.ns * h.no;  /* plan: sb * ot <= 2^31 - 1 */
        if ((M + kGT - 1) / kGT > 65535 || planes > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
        const dim3 g((unsigned)((N + kGT - 1) / kGT), (unsigned)((M + kGT - 1) / kGT));
        if (h.P.gemm_split) /* every tap's GEMM, accumulated into Y in the epilogue */
            k_hyb_gemm_f16<<<g, 128, 0, st>>>(h, M, N, h.P.C);
        else
            k_hyb_gemm_f32<<<g, 256, 0, st>>>(h, M, N, h.P.C);
        const size_t smem = h.A ? 0 : sizeof(sd_cf) * (size_t)h.P.F; /* <= 48 KiB (plan) */
        k_hyb_spatial<<<(unsigned)planes, hyb_spatial_threads(h.P.F), smem, st>>>(h);
        return cudaGetLastError();
    }
};

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
    if (P.hyb) {
        unsigned char* base = sd::ws_base(workspace);
        const sd_cf* twH2 = prod.twH;
        const sd_cf* twW2 = prod.twW;
        if (P.pool != SD_POOL_NONE) {
            twH2 = (const sd_cf*)(base + P.tw_h2);
            twW2 = (const sd_cf*)(base + P.tw_w2);
            e = sd_launch_twiddle(const_cast<sd_cf*>(twH2), P.oHs, cs);
            if (e == cudaSuccess) e = sd_launch_twiddle(const_cast<sd_cf*>(twW2), P.oWs, cs);
            if (e != cudaSuccess) return sd::cuda_fail("SpecConv", e);
        }
        HybArgs h{};
        h.in = prod;
        h.a = pipe;
        h.P = P;
        h.w = w;
        h.bias = P.has_bias ? b : nullptr;
        h.Y = (sd_cf*)(base + P.h_y);
        h.A = P.hyb_stage_ws ? (sd_cf*)(base + P.h_a) : nullptr;
        h.twH2 = twH2;
        h.twW2 = twW2;
        const sd_hyb_producer hp = sd_hyb_setup(P, workspace, prod);
        e = sd_launch_pipeline_chunked(hp, pipe, P.hyb_sb, (P.hyb_ot + sd_conv_producer::OT - 1) / sd_conv_producer::OT,
                                       DevHybPrep{h, cs}, cs);
        if (e != cudaSuccess) return sd::cuda_fail("SpecConv", e);
        return SD_OK;
    }
    e = sd_launch_pipeline(prod, pipe, cs);
    if (e != cudaSuccess) return sd::cuda_fail("SpecConv", e);
    return SD_OK;
}
