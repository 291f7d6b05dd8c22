/*
 * The count / decide / recount / scan / write pipeline shared by every op with a packed output
 * (SpecConv, SpecPool, SpecConcat), DESIGN §5: no dense buffer of the output is ever formed.
 *
 * A "producer" P describes the op per element (SD_HD, identical on host and device):
 *   static constexpr int OT;                      output channels per tile
 *   void eval(s, f, c0, nc, sd_cf v[OT], bool cand[OT]) const
 *        value (pre-activation for SpecConv) and candidacy of (s, c0 + j, f) for j < nc
 *   sd_cf finalize(sd_cf v) const                  value to store (activation)
 *   uint32_t in_overflowed(s) const                sticky flag of the packed inputs
 *   uint32_t in_flags_part(s, tid, nthreads) const  part of header flags bit 0 of sample s: the inputs'
 *                                                   flags, or a non-finite input value (OR over parts)
 * A tile is (sample s, frequency block b of 128, group og of OT channels); one "thread" per
 * frequency; 32 consecutive frequencies (a warp on the GPU) form one mask word.
 *
 *   0. FLAGS   per sample: flags bit 0 of the output header (DESIGN §4).
 *   1. COUNT   per (b, c): popcount of kept-at-own-rule, written into the output row's offsets
 *              region; per sample: coarse histogram of grid levels of the candidates (workspace).
 *   2. DECIDE  per sample: count0 = sum of counts; over capacity -> the octave of the grid threshold
 *              (threshold.h, sd_decide_coarse).
 *   3. REFINE  only samples that overflowed and need it: fine histogram of that octave; the grid
 *              threshold (sd_decide_fine).
 *   4. RECOUNT only samples that overflowed: the counts again, at the grid threshold.
 *   5. SCAN    per sample: exclusive scan of the counts in place -> offsets; header; zero unused slots.
 *   6. WRITE   recompute the tile, write mask words and values at offsets + rank.
 * Each pass recomputes the tile with the same SD_HD functions, so the kept sets agree bit for bit.
 * A producer that needs dense per-chunk buffers (the hybrid SpecConv) fills them before the tiles of a
 * chunk of samples and channel groups (sd_tile_range); the others run every tile in one go.
 */
#ifndef SPECDEPLOY_PIPELINE_H
#define SPECDEPLOY_PIPELINE_H

#include "specdeploy/complex_math.h"
#include "specdeploy/hd.h"
#include "specdeploy/packed.h"
#include "specdeploy/threshold.h"

#define SD_MODE_COUNT 0
#define SD_MODE_RECOUNT 1
#define SD_MODE_WRITE 2
#define SD_MODE_REFINE 3

struct sd_pipe {
    int32_t B, Cout, F, NB, cap, vdt;
    int32_t beta_gate;   /* 1: kept at beta (SpecConv); 0: inherited (SpecPool, SpecConcat) */
    float beta;          /* SpecConv beta; 0 otherwise */
    float base;          /* grid base max(beta, 2^-10) */
    float beta_used0;    /* beta_used when the sample did not overflow: beta, or 0 */
    sd_layout L;         /* output layout */
    int32_t* y;          /* [B, L.S] */
    uint32_t* hist;      /* [B, SD_HIST_WORDS] workspace: coarse then fine bins (threshold.h) */
    float* thr;          /* [B] threshold used (beta_used) */
    uint32_t* own;       /* [B] this op overflowed */
    uint32_t* flag;      /* [B] header overflowed = own | inputs' */
    int32_t* oct;        /* [B] octave to refine (-1: none) */
    uint32_t* nf;        /* [B] header flags bit 0 */
};

/* The tiles of one chunk: samples s0 .. s0+ns-1, channel groups og0 .. og0+nog-1 (all blocks). */
struct sd_tile_range {
    int32_t s0, ns, og0, nog;
};

/* Does sample s take part in the pass `mode`? */
SD_HD inline bool sd_pass_wants(const sd_pipe& a, int mode, int32_t s) {
    if (mode == SD_MODE_RECOUNT) return a.own[s] != 0u;
    if (mode == SD_MODE_REFINE) return a.own[s] != 0u && a.oct[s] >= 0;
    return true;
}

SD_HD inline int32_t sd_channel_groups(int32_t Cout, int32_t OT) { return (Cout + OT - 1) / OT; }

/* A NaN or Inf in either component (integer test: the same on host and device). The count pass sets
 * the sample's header flags bit 0 for such a value (the pre-threshold spectrum of SpecConv: a finite
 * input whose spectrum overflows), as the reference does (docs/format.md, word 3). */
SD_HD inline bool sd_cf_nonfinite(sd_cf v) {
    return (sd_f2u(v.re) & 0x7f800000u) == 0x7f800000u || (sd_f2u(v.im) & 0x7f800000u) == 0x7f800000u;
}

/* The scan of one sample's NB*Cout counts, split over SD_SCAN_THREADS "threads" (a CUDA block; the
 * host runs the same steps one thread after the other):
 *   1. each thread sums its contiguous segment (sd_scan_segment, sd_scan_sum),
 *   2. an exclusive scan of the SD_SCAN_THREADS partial sums (one thread),
 *   3. each thread rewrites its segment as offsets from its start (sd_scan_write),
 * then offsets[NB*Cout] and the header, and the unused value slots are zeroed (sd_zero_tail). */
#define SD_SCAN_THREADS 256

SD_HD inline void sd_scan_segment(int64_t n, int32_t tid, int64_t* lo, int64_t* hi) {
    const int64_t seg = (n + SD_SCAN_THREADS - 1) / SD_SCAN_THREADS;
    *lo = (int64_t)tid * seg;
    *hi = (*lo + seg) < n ? (*lo + seg) : n;
}

SD_HD inline uint32_t sd_scan_sum(const int32_t* counts, int64_t lo, int64_t hi) {
    uint32_t sum = 0;
    for (int64_t i = lo; i < hi; ++i) sum += (uint32_t)counts[i];
    return sum;
}

SD_HD inline void sd_scan_write(int32_t* counts, int64_t lo, int64_t hi, uint32_t start) {
    uint32_t run = start;
    for (int64_t i = lo; i < hi; ++i) {
        const uint32_t x = (uint32_t)counts[i];
        counts[i] = (int32_t)run;
        run += x;
    }
}

/* Exclusive scan of part[0 .. SD_SCAN_THREADS-1] in place; returns the total. */
SD_HD inline uint32_t sd_scan_partials(uint32_t* part) {
    uint32_t run = 0;
    for (int i = 0; i < SD_SCAN_THREADS; ++i) {
        const uint32_t x = part[i];
        part[i] = run;
        run += x;
    }
    return run;
}

/* Zero the value words after the nnz used slots; thread tid of nthreads takes every nthreads-th word. */
SD_HD inline void sd_zero_tail(int32_t* row, const sd_layout& L, uint32_t nnz, int32_t tid, int32_t nthreads) {
    const int64_t used = nnz < (uint32_t)L.cap ? (int64_t)nnz : (int64_t)L.cap;
    for (int64_t w = L.vals_off + used * L.vw + tid; w < L.S; w += nthreads) row[w] = 0;
}

#if !defined(__CUDACC__)
/* ---------------------------------------------------------------------------------------------- */
/* Host execution of the pipeline: the same tiles, in order, one "thread" after the other.        */
#include <string.h>

template <class P>
inline void sd_host_tile(const P& prod, const sd_pipe& a, int mode, int32_t s, int32_t b, int32_t og) {
    constexpr int OT = P::OT;
    const int32_t o0 = og * OT;
    const int32_t no = (a.Cout - o0) < OT ? (a.Cout - o0) : OT;
    sd_cf v[SD_BLOCK_F][OT];
    bool cand[SD_BLOCK_F][OT];
    for (int tid = 0; tid < SD_BLOCK_F; ++tid) {
        for (int j = 0; j < OT; ++j) {
            v[tid][j] = sd_cf_zero();
            cand[tid][j] = false;
        }
        const int32_t f = b * SD_BLOCK_F + tid;
        if (f < a.F) prod.eval(s, f, o0, no, v[tid], cand[tid]);
    }
    const float t1 = sd_grid_t(a.base, 1);
    if (mode == SD_MODE_REFINE) {
        uint32_t* fine = a.hist + (int64_t)s * SD_HIST_WORDS + SD_NOCT;
        const int32_t oct = a.oct[s];
        for (int j = 0; j < no; ++j)
            for (int tid = 0; tid < SD_BLOCK_F; ++tid) {
                if (!cand[tid][j]) continue;
                const int32_t lev = sd_level(sd_abs2(v[tid][j]), a.base, t1);
                if (lev > 0 && (lev >> 3) == oct) fine[lev & 7] += 1u;
            }
        return;
    }
    const uint32_t use_thr = (mode != SD_MODE_COUNT) ? a.own[s] : 0u;
    const float thr = use_thr ? a.thr[s] : 0.0f;
    int32_t* row = a.y + (int64_t)s * a.L.S;
    for (int j = 0; j < no; ++j) {
        const int32_t o = o0 + j;
        uint32_t words[4] = {0u, 0u, 0u, 0u};
        for (int tid = 0; tid < SD_BLOCK_F; ++tid) {
            const float m = sd_abs2(v[tid][j]);
            if (sd_keep(cand[tid][j], m, use_thr, thr, a.beta_gate, a.beta)) words[tid >> 5] |= 1u << (tid & 31);
            if (mode == SD_MODE_COUNT && cand[tid][j]) {
                const int32_t lev = sd_level(m, a.base, t1);
                if (lev > 0) a.hist[(int64_t)s * SD_HIST_WORDS + (lev >> 3)] += 1u;
                if (sd_cf_nonfinite(v[tid][j])) a.nf[s] = 1u; /* a NaN/Inf computed here (docs/format.md) */
            }
        }
        if (mode != SD_MODE_WRITE) {
            row[sd_offset_word(a.L, b, o)] =
                (int32_t)(sd_popc(words[0]) + sd_popc(words[1]) + sd_popc(words[2]) + sd_popc(words[3]));
        } else {
            uint32_t rank = (uint32_t)row[sd_offset_word(a.L, b, o)];
            for (int i = 0; i < 4; ++i) row[sd_mask_word(a.L, b, o, i)] = (int32_t)words[i];
            for (int tid = 0; tid < SD_BLOCK_F; ++tid) {
                if (!((words[tid >> 5] >> (tid & 31)) & 1u)) continue;
                if (rank < (uint32_t)a.cap) sd_store_value(row + a.L.vals_off, rank, a.vdt, prod.finalize(v[tid][j]));
                ++rank;
            }
        }
    }
}

/* A no-op chunk preparation: producers that compute everything per element. */
struct sd_no_prep {
    inline void operator()(int, const sd_tile_range&) const {}
};

/* The pipeline over chunks of s_chunk samples and og_chunk channel groups; prep(mode, range) runs
 * before the tiles of each chunk of each pass (the hybrid SpecConv fills its dense buffers there). */
template <class P, class Prep>
inline void sd_host_pipeline_chunked(const P& prod, const sd_pipe& a, int32_t s_chunk, int32_t og_chunk,
                                     const Prep& prep) {
    const int32_t OG = sd_channel_groups(a.Cout, P::OT);
    const int64_t nbc = (int64_t)a.NB * a.Cout;
    memset(a.hist, 0, sizeof(uint32_t) * (size_t)a.B * SD_HIST_WORDS);
    for (int32_t s = 0; s < a.B; ++s) a.nf[s] = prod.in_flags_part(s, 0, 1);
    auto pass = [&](int mode) {
        for (int32_t s0 = 0; s0 < a.B; s0 += s_chunk) {
            const int32_t ns = (a.B - s0) < s_chunk ? (a.B - s0) : s_chunk;
            bool any = false;
            for (int32_t s = s0; s < s0 + ns; ++s) any = any || sd_pass_wants(a, mode, s);
            if (!any) continue;
            for (int32_t og0 = 0; og0 < OG; og0 += og_chunk) {
                const int32_t nog = (OG - og0) < og_chunk ? (OG - og0) : og_chunk;
                prep(mode, sd_tile_range{s0, ns, og0, nog});
                for (int32_t s = s0; s < s0 + ns; ++s) {
                    if (!sd_pass_wants(a, mode, s)) continue;
                    for (int32_t b = 0; b < a.NB; ++b)
                        for (int32_t og = og0; og < og0 + nog; ++og) sd_host_tile(prod, a, mode, s, b, og);
                }
            }
        }
    };
    pass(SD_MODE_COUNT);
    for (int32_t s = 0; s < a.B; ++s) {
        const int32_t* row = a.y + (int64_t)s * a.L.S;
        uint64_t count0 = 0;
        for (int64_t i = 0; i < nbc; ++i) count0 += (uint32_t)row[a.L.offs_off + i];
        sd_decide_coarse(a.hist + (int64_t)s * SD_HIST_WORDS, count0, a.cap, a.base, a.beta_used0, &a.thr[s], &a.own[s],
                         &a.oct[s]);
        a.flag[s] = a.own[s] | prod.in_overflowed(s);
    }
    pass(SD_MODE_REFINE);
    for (int32_t s = 0; s < a.B; ++s) {
        if (!sd_pass_wants(a, SD_MODE_REFINE, s)) continue;
        const uint32_t* h = a.hist + (int64_t)s * SD_HIST_WORDS;
        sd_decide_fine(h, h + SD_NOCT, a.oct[s], a.cap, a.base, &a.thr[s]);
    }
    pass(SD_MODE_RECOUNT);
    for (int32_t s = 0; s < a.B; ++s) { /* the steps of sd_k_scan */
        int32_t* row = a.y + (int64_t)s * a.L.S;
        int32_t* counts = row + a.L.offs_off;
        uint32_t part[SD_SCAN_THREADS];
        int64_t lo, hi;
        for (int32_t tid = 0; tid < SD_SCAN_THREADS; ++tid) {
            sd_scan_segment(nbc, tid, &lo, &hi);
            part[tid] = sd_scan_sum(counts, lo, hi);
        }
        const uint32_t nnz = sd_scan_partials(part);
        for (int32_t tid = 0; tid < SD_SCAN_THREADS; ++tid) {
            sd_scan_segment(nbc, tid, &lo, &hi);
            sd_scan_write(counts, lo, hi, part[tid]);
        }
        counts[nbc] = (int32_t)nnz;
        sd_write_header(row, nnz, a.flag[s], a.thr[s], a.nf[s]);
        sd_zero_tail(row, a.L, nnz, 0, 1);
    }
    pass(SD_MODE_WRITE);
}

template <class P>
inline void sd_host_pipeline(const P& prod, const sd_pipe& a) {
    const int32_t big = 0x7fffffff;
    sd_host_pipeline_chunked(prod, a, big, big, sd_no_prep{});
}
#endif /* host */

#endif /* SPECDEPLOY_PIPELINE_H */
