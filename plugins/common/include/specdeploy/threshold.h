/*
 * Threshold and overflow grid of docs/format.md, shared by host and device.
 *   kept at t  <=>  re*re + im*im > t*t   (fp32, never fused, no sqrt)
 *   base = max(beta, 2^-10);  t_i = ldexp(base * R[i % 8], i / 8),  i = 1, 2, ...
 * t_i is non-decreasing in i and so is fp32(t_i * t_i), so "kept at t_i" is monotone in i and every
 * value m = |v|^2 has a level L(m) = max{ i >= 1 : m > t_i^2 } (0 if none): the count kept at t_i is
 * the number of coefficients with level >= i. Kernels build a per-sample two-level histogram of
 * levels (sd_decide_coarse, sd_decide_fine) and pick the smallest i whose count fits the capacity.
 * Levels stop at SD_NLEV - 1: t_i >= 2^-10 * 2^(i/8) gives t_i^2 = inf (nothing kept) for
 * i >= 8 * 74 = 592 < SD_NLEV.
 */
#ifndef SPECDEPLOY_THRESHOLD_H
#define SPECDEPLOY_THRESHOLD_H

#include "specdeploy/complex_math.h"
#include "specdeploy/hd.h"
#include "specdeploy/packed.h"

#define SD_NLEV 600
#define SD_GRID_MIN_BASE 0.0009765625f /* 2^-10 */

/* fp32 of 2^(j/8), j = 0..7 */
SD_HD inline float sd_grid_R(int32_t j) {
    switch (j & 7) {
        case 0: return 1.0f;
        case 1: return 1.0905077326652577f;
        case 2: return 1.189207115002721f;
        case 3: return 1.2968395546510096f;
        case 4: return 1.4142135623730951f;
        case 5: return 1.5422108254079407f;
        case 6: return 1.681792830507429f;
        default: return 1.8340080864093424f;
    }
}

/* x * 2^n for n >= 0 and x >= 2^-10 (normal): exact, or inf. */
SD_HD inline float sd_ldexp_pos(float x, int32_t n) {
    while (n > 64) {
        x = sd_fmul(x, 18446744073709551616.0f); /* 2^64 */
        n -= 64;
    }
    return sd_fmul(x, sd_u2f((uint32_t)(127 + n) << 23));
}

SD_HD inline float sd_grid_base(float beta) { return beta > SD_GRID_MIN_BASE ? beta : SD_GRID_MIN_BASE; }

/* t_i, i >= 1 */
SD_HD inline float sd_grid_t(float base, int32_t i) { return sd_ldexp_pos(sd_fmul(base, sd_grid_R(i & 7)), i >> 3); }

/* m = sd_abs2(v) */
SD_HD inline bool sd_kept_at(float m, float t) { return m > sd_fmul(t, t); }

/* Level of m: largest i in [1, SD_NLEV - 1] with m > t_i^2, or 0. t1 = sd_grid_t(base, 1). */
SD_HD inline int32_t sd_level(float m, float base, float t1) {
    if (!sd_kept_at(m, t1)) return 0;
    int32_t lo = 1, hi = SD_NLEV; /* kept at t_lo; not kept at t_hi (t_hi^2 = inf) */
    while (hi - lo > 1) {
        const int32_t mid = (lo + hi) >> 1;
        if (sd_kept_at(m, sd_grid_t(base, mid)))
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* The level histogram is two-level (issue 14: ~7x less scratch than one bin per level): per sample,
 * SD_NOCT coarse bins (octave j = L >> 3, levels 8j .. 8j+7; level 0 is never counted) filled by the
 * count pass, then, only for a sample that overflowed and only when needed, SD_NFINE fine bins of
 * one octave filled by a refine pass. The decision equals the one-level rule exactly: the smallest
 * i >= 1 with #(L >= i) <= capacity. */
#define SD_NOCT (SD_NLEV / 8)              /* 75 */
#define SD_NFINE 8
#define SD_HIST_WORDS (SD_NOCT + SD_NFINE) /* per sample: coarse bins, then fine bins */

/* Step 1, after the count pass. count0 = number kept at the op's own rule (beta, or inherited);
 * coarse[j] = candidates with level >> 3 == j (level >= 1). count0 <= cap: *own = 0, *thr =
 * beta_used0. Else *own = 1 and either the answer is i = 1 (*oct = -1, *thr = t_1), or the answer is
 * in [8*oct + 1, 8*oct + 8] with oct = *oct >= 0: a refine pass fills the fine bins of octave oct
 * (levels 8*oct .. 8*oct + 7) and sd_decide_fine sets *thr. */
SD_HD inline void sd_decide_coarse(const uint32_t* coarse, uint64_t count0, int32_t cap, float base, float beta_used0,
                                   float* thr, uint32_t* own, int32_t* oct) {
    *oct = -1;
    if (count0 <= (uint64_t)cap) {
        *own = 0;
        *thr = beta_used0;
        return;
    }
    *own = 1;
    /* j0 = smallest j in [0, SD_NOCT] with #(L >= max(8j, 1)) <= cap (#(L >= 600) = 0) */
    int32_t j0 = SD_NOCT;
    uint64_t suffix = 0;
    for (int32_t j = SD_NOCT - 1; j >= 0; --j) {
        suffix += coarse[j];
        if (suffix > (uint64_t)cap) break;
        j0 = j;
    }
    if (j0 == 0) {
        *thr = sd_grid_t(base, 1);
        return;
    }
    *oct = j0 - 1;
    *thr = 0.0f; /* set by sd_decide_fine */
}

/* Step 2, after the refine pass of a sample with oct >= 0: fine[l] = candidates with level 8*oct + l.
 * The smallest i in [max(8*oct, 1), 8*oct + 8] with #(L >= i) <= cap; t_i into *thr. */
SD_HD inline void sd_decide_fine(const uint32_t* coarse, const uint32_t* fine, int32_t oct, int32_t cap, float base,
                                 float* thr) {
    uint64_t suffix = 0; /* #(L >= 8*(oct+1)) */
    for (int32_t j = oct + 1; j < SD_NOCT; ++j) suffix += coarse[j];
    int32_t best = 8 * (oct + 1); /* nothing is kept at t_SD_NLEV */
    const int32_t lo = 8 * oct > 1 ? 8 * oct : 1;
    for (int32_t i = 8 * oct + 7; i >= lo; --i) {
        suffix += fine[i - 8 * oct];
        if (suffix > (uint64_t)cap) break;
        best = i;
    }
    *thr = sd_grid_t(base, best);
}

/* The one-level rule (hist[L] for every level L >= 1), kept as the specification that the two-level
 * decision is tested against (plugins/tests/packed_test.cpp). */
SD_HD inline void sd_decide(const uint32_t* hist, uint64_t count0, int32_t cap, float base, float beta_used0,
                            float* thr, uint32_t* own) {
    if (count0 <= (uint64_t)cap) {
        *own = 0;
        *thr = beta_used0;
        return;
    }
    int32_t best = SD_NLEV; /* nothing is kept at t_SD_NLEV */
    uint64_t suffix = 0;
    for (int32_t i = SD_NLEV - 1; i >= 1; --i) {
        suffix += hist[i];
        if (suffix > (uint64_t)cap) break;
        best = i;
    }
    *own = 1;
    *thr = sd_grid_t(base, best);
}

/* Kept-ness of a candidate in the count/write passes. cand: the producer's own candidacy (always
 * true for SpecConv; the input mask bit for SpecPool/SpecConcat). When the sample overflowed
 * (use_thr), the grid threshold applies; otherwise SpecConv thresholds at beta (beta_gate = 1) and
 * the others inherit (beta_gate = 0). */
SD_HD inline bool sd_keep(bool cand, float m, uint32_t use_thr, float thr, int32_t beta_gate, float beta) {
    if (!cand) return false;
    if (use_thr) return sd_kept_at(m, thr);
    return beta_gate ? sd_kept_at(m, beta) : true;
}

#endif /* SPECDEPLOY_THRESHOLD_H */
