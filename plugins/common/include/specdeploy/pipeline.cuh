/*
 * Device execution of the pipeline of pipeline.h: one CUDA block of 128 threads per tile (four warps
 * = the four mask words of a (block, channel)), the same SD_HD per-element functions as the host.
 * Include from .cu files only.
 */
#ifndef SPECDEPLOY_PIPELINE_CUH
#define SPECDEPLOY_PIPELINE_CUH

#include <cuda_runtime.h>

#include "specdeploy/packed.cuh"
#include "specdeploy/pipeline.h"

template <class P>
__global__ void __launch_bounds__(SD_BLOCK_F) sd_k_tile(const __grid_constant__ P prod, const __grid_constant__ sd_pipe a,
                                                     const int mode, const sd_tile_range r) {
    constexpr int OT = P::OT;
    __shared__ uint32_t s_hist[SD_NOCT];
    __shared__ uint32_t s_words[4][OT];

    /* blockIdx.x = ((s - r.s0) * NB + b) * r.nog + (og - r.og0): the blocks of one (sample, block)
     * are adjacent, so consecutive CUDA blocks touch one stretch of the output row */
    int64_t t = blockIdx.x;
    const int32_t og = r.og0 + (int32_t)(t % r.nog);
    t /= r.nog;
    const int32_t b = (int32_t)(t % a.NB);
    const int32_t s = r.s0 + (int32_t)(t / a.NB);
    if (!sd_pass_wants(a, mode, s)) return; /* uniform over the block */

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    if (mode == SD_MODE_COUNT || mode == SD_MODE_REFINE)
        for (int i = tid; i < SD_NOCT; i += SD_BLOCK_F) s_hist[i] = 0u;

    const int32_t o0 = og * OT;
    const int32_t no = (a.Cout - o0) < OT ? (a.Cout - o0) : OT;
    sd_cf v[OT];
    bool cand[OT];
#pragma unroll
    for (int j = 0; j < OT; ++j) {
        v[j] = sd_cf_zero();
        cand[j] = false;
    }
    const int32_t f = b * SD_BLOCK_F + tid;
    if (f < a.F) prod.eval(s, f, o0, no, v, cand);

    const float t1 = sd_grid_t(a.base, 1);
    __syncthreads(); /* s_hist cleared */
    if (mode == SD_MODE_REFINE) {
        const int32_t oct = a.oct[s];
#pragma unroll
        for (int j = 0; j < OT; ++j) {
            if (j < no && cand[j]) {
                const int32_t lev = sd_level(sd_abs2(v[j]), a.base, t1);
                if (lev > 0 && (lev >> 3) == oct) atomicAdd(&s_hist[lev & 7], 1u);
            }
        }
        __syncthreads();
        uint32_t* fine = a.hist + (int64_t)s * SD_HIST_WORDS + SD_NOCT;
        if (tid < SD_NFINE && s_hist[tid]) atomicAdd(&fine[tid], s_hist[tid]);
        return;
    }
    const uint32_t use_thr = (mode != SD_MODE_COUNT) ? a.own[s] : 0u;
    const float thr = use_thr ? a.thr[s] : 0.0f;

    bool keep[OT];
#pragma unroll
    for (int j = 0; j < OT; ++j) {
        keep[j] = false;
        if (j < no) {
            const float m = sd_abs2(v[j]);
            keep[j] = sd_keep(cand[j], m, use_thr, thr, a.beta_gate, a.beta);
            const uint32_t word = __ballot_sync(0xffffffffu, keep[j]);
            if (lane == 0) s_words[warp][j] = word;
            if (mode == SD_MODE_COUNT && cand[j]) {
                const int32_t lev = sd_level(m, a.base, t1);
                if (lev > 0) atomicAdd(&s_hist[lev >> 3], 1u);
                if (sd_cf_nonfinite(v[j])) a.nf[s] = 1u; /* same value from every writer: no race */
            }
        }
    }
    __syncthreads();

    int32_t* row = a.y + (int64_t)s * a.L.S;
    if (mode != SD_MODE_WRITE) {
        if (tid < no) {
            const uint32_t cnt =
                sd_popc(s_words[0][tid]) + sd_popc(s_words[1][tid]) + sd_popc(s_words[2][tid]) + sd_popc(s_words[3][tid]);
            row[sd_offset_word(a.L, b, o0 + tid)] = (int32_t)cnt;
        }
        if (mode == SD_MODE_COUNT) {
            uint32_t* gh = a.hist + (int64_t)s * SD_HIST_WORDS;
            for (int i = tid; i < SD_NOCT; i += SD_BLOCK_F) {
                const uint32_t c = s_hist[i];
                if (c) atomicAdd(&gh[i], c);
            }
        }
        return;
    }
    const uint32_t lt = sd_lanemask_lt();
#pragma unroll
    for (int j = 0; j < OT; ++j) {
        if (j < no) {
            const int32_t o = o0 + j;
            const uint32_t word = s_words[warp][j];
            if (lane == 0) row[sd_mask_word(a.L, b, o, warp)] = (int32_t)word;
            if (keep[j]) {
                uint32_t rank = (uint32_t)row[sd_offset_word(a.L, b, o)];
                for (int i = 0; i < warp; ++i) rank += sd_popc(s_words[i][j]);
                rank += sd_popc(word & lt);
                if (rank < (uint32_t)a.cap) sd_store_value(row + a.L.vals_off, rank, a.vdt, prod.finalize(v[j]));
            }
        }
    }
}

template <class P>
__global__ void __launch_bounds__(256) sd_k_decide(const __grid_constant__ P prod, const sd_pipe a) {
    __shared__ unsigned long long part[256];
    const int32_t s = blockIdx.x;
    const int tid = threadIdx.x;
    const int32_t* row = a.y + (int64_t)s * a.L.S;
    const int64_t nbc = (int64_t)a.NB * a.Cout;
    unsigned long long sum = 0;
    for (int64_t i = tid; i < nbc; i += 256) sum += (uint32_t)row[a.L.offs_off + i];
    part[tid] = sum;
    __syncthreads();
    for (int w = 128; w > 0; w >>= 1) {
        if (tid < w) part[tid] += part[tid + w];
        __syncthreads();
    }
    if (tid == 0) {
        float t;
        uint32_t own;
        int32_t oct;
        sd_decide_coarse(a.hist + (int64_t)s * SD_HIST_WORDS, part[0], a.cap, a.base, a.beta_used0, &t, &own, &oct);
        a.thr[s] = t;
        a.own[s] = own;
        a.oct[s] = oct;
        a.flag[s] = own | prod.in_overflowed(s);
    }
}

/* After the refine pass: the grid threshold of the samples that refined (one thread per sample). */
static __global__ void sd_k_decide_fine(const sd_pipe a) {
    const int32_t s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= a.B || !sd_pass_wants(a, SD_MODE_REFINE, s)) return;
    const uint32_t* h = a.hist + (int64_t)s * SD_HIST_WORDS;
    sd_decide_fine(h, h + SD_NOCT, a.oct[s], a.cap, a.base, &a.thr[s]);
}

/* Header flags bit 0 per sample: one block per sample, OR over the producer's parts. */
template <class P>
__global__ void __launch_bounds__(256) sd_k_flags(const __grid_constant__ P prod, const sd_pipe a) {
    const int32_t s = blockIdx.x;
    const uint32_t any = prod.in_flags_part(s, (int32_t)threadIdx.x, 256);
    const int r = __syncthreads_or((int)any);
    if (threadIdx.x == 0) a.nf[s] = r ? 1u : 0u;
}

/* Exclusive scan of one sample's counts in place, header, zero the unused value slots (pipeline.h). */
static __global__ void __launch_bounds__(SD_SCAN_THREADS) sd_k_scan(const sd_pipe a) {
    __shared__ uint32_t part[SD_SCAN_THREADS];
    __shared__ uint32_t total;
    const int32_t s = blockIdx.x;
    const int32_t tid = threadIdx.x;
    int32_t* row = a.y + (int64_t)s * a.L.S;
    int32_t* counts = row + a.L.offs_off;
    const int64_t nbc = (int64_t)a.NB * a.Cout;
    int64_t lo, hi;
    sd_scan_segment(nbc, tid, &lo, &hi);
    part[tid] = sd_scan_sum(counts, lo, hi);
    __syncthreads();
    if (tid == 0) total = sd_scan_partials(part);
    __syncthreads();
    sd_scan_write(counts, lo, hi, part[tid]);
    const uint32_t nnz = total;
    if (tid == 0) {
        counts[nbc] = (int32_t)nnz;
        sd_write_header(row, nnz, a.flag[s], a.thr[s], a.nf[s]);
    }
    sd_zero_tail(row, a.L, nnz, tid, SD_SCAN_THREADS);
}

/* Builds a twiddle table e^{-2 pi i j / N}, j < N (the same function as the host). */
static __global__ void sd_k_twiddle(sd_cf* tw, int32_t N) {
    const int32_t j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < N) tw[j] = sd_twiddle(j, N);
}

static inline cudaError_t sd_launch_twiddle(sd_cf* tw, int32_t N, cudaStream_t st) {
    sd_k_twiddle<<<(N + 127) / 128, 128, 0, st>>>(tw, N);
    return cudaGetLastError();
}

/* A no-op chunk preparation (see pipeline.h). */
struct sd_no_prep_dev {
    inline cudaError_t operator()(int, const sd_tile_range&) const { return cudaSuccess; }
};

/* The pipeline over chunks of s_chunk samples and og_chunk channel groups; prep(mode, range) enqueues
 * the work that fills a chunk's dense buffers before its tiles (the hybrid SpecConv). A pass over a
 * chunk whose samples all skip it still launches (the tile blocks exit at once; the host cannot see
 * which samples overflowed without a sync, and there is none). */
template <class P, class Prep>
inline cudaError_t sd_launch_pipeline_chunked(const P& prod, const sd_pipe& a, int32_t s_chunk, int32_t og_chunk,
                                              const Prep& prep, cudaStream_t st) {
    const int32_t OG = sd_channel_groups(a.Cout, P::OT);
    if ((int64_t)a.B * a.NB * OG <= 0) return cudaSuccess;
    cudaError_t e = cudaMemsetAsync(a.hist, 0, sizeof(uint32_t) * (size_t)a.B * SD_HIST_WORDS, st);
    if (e != cudaSuccess) return e;
    sd_k_flags<P><<<a.B, 256, 0, st>>>(prod, a);
    auto pass = [&](int mode) -> cudaError_t {
        for (int32_t s0 = 0; s0 < a.B; s0 += s_chunk) {
            const int32_t ns = (a.B - s0) < s_chunk ? (a.B - s0) : s_chunk;
            for (int32_t og0 = 0; og0 < OG; og0 += og_chunk) {
                const int32_t nog = (OG - og0) < og_chunk ? (OG - og0) : og_chunk;
                const sd_tile_range r{s0, ns, og0, nog};
                const int64_t tiles = (int64_t)ns * a.NB * nog;
                if (tiles > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
                cudaError_t pe = prep(mode, r);
                if (pe != cudaSuccess) return pe;
                sd_k_tile<P><<<(unsigned)tiles, SD_BLOCK_F, 0, st>>>(prod, a, mode, r);
            }
        }
        return cudaGetLastError();
    };
    if ((e = pass(SD_MODE_COUNT)) != cudaSuccess) return e;
    sd_k_decide<P><<<a.B, 256, 0, st>>>(prod, a);
    if ((e = pass(SD_MODE_REFINE)) != cudaSuccess) return e;
    sd_k_decide_fine<<<(a.B + 127) / 128, 128, 0, st>>>(a);
    if ((e = pass(SD_MODE_RECOUNT)) != cudaSuccess) return e;
    sd_k_scan<<<a.B, SD_SCAN_THREADS, 0, st>>>(a);
    if ((e = pass(SD_MODE_WRITE)) != cudaSuccess) return e;
    return cudaGetLastError();
}

template <class P>
inline cudaError_t sd_launch_pipeline(const P& prod, const sd_pipe& a, cudaStream_t st) {
    const int32_t big = 0x7fffffff;
    return sd_launch_pipeline_chunked(prod, a, big, big, sd_no_prep_dev{}, st);
}

#endif /* SPECDEPLOY_PIPELINE_CUH */
