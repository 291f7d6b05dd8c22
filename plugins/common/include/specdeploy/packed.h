/*
 * The packed format of docs/format.md: layout arithmetic, header fields, mask/offset access and the
 * fp16 value encoding, as SD_HD functions shared by the CUDA kernels, the host library and the C++
 * tests. Word indices are int64 (a row can be long), element counts int32 (as in the C ABI).
 *
 *   header  : 4 words  nnz, overflowed, beta_used (float bits), flags (bit 0: non-finite input, sticky)
 *   mask    : NB*C*4   block b of channel c at words [(b*C + c)*4 .. +3]; bit j of word i = f = 128b + 32i + j
 *   offsets : NB*C + 1 exclusive prefix sum of the (b, c) popcounts; offsets[NB*C] = nnz
 *   values  : cap*vw   (b, c, f) order; fp32: re, im words; fp16: re low half, im high half
 */
#ifndef SPECDEPLOY_PACKED_H
#define SPECDEPLOY_PACKED_H

#include "specdeploy/complex_math.h"
#include "specdeploy/hd.h"

#define SD_BLOCK_F 128
#define SD_HEADER_WORDS 4
#define SD_HDR_NNZ 0
#define SD_HDR_OVERFLOWED 1
#define SD_HDR_BETA_USED 2
#define SD_HDR_FLAGS 3
#define SD_FLAG_NONFINITE 1u /* flags bit 0: a non-finite value reached an op for this sample (sticky) */

struct sd_layout {
    int32_t C, F, NB, cap, vdt, vw;
    int64_t mask_off, offs_off, vals_off, S;
};

SD_HD inline int32_t sd_num_blocks(int32_t F) { return (int32_t)(((int64_t)F + SD_BLOCK_F - 1) / SD_BLOCK_F); }

/* words per complex value: 2 (fp32) or 1 (fp16) */
SD_HD inline int32_t sd_value_words(int32_t vdt) { return vdt == 1 ? 1 : 2; }

/* Layout for valid arguments (C >= 1, F >= 1, 1 <= cap <= C*F, vdt 0/1); no checks here. */
SD_HD inline sd_layout sd_make_layout(int32_t C, int32_t F, int32_t cap, int32_t vdt) {
    sd_layout L;
    L.C = C;
    L.F = F;
    L.NB = sd_num_blocks(F);
    L.cap = cap;
    L.vdt = vdt;
    L.vw = sd_value_words(vdt);
    const int64_t nbc = (int64_t)L.NB * C;
    L.mask_off = SD_HEADER_WORDS;
    L.offs_off = L.mask_off + 4 * nbc;
    L.vals_off = L.offs_off + nbc + 1;
    L.S = L.vals_off + (int64_t)cap * L.vw;
    return L;
}

/* S = 4 + 5*NB*C + 1 + cap*vw */
SD_HD inline int64_t sd_row_words(int32_t C, int32_t F, int32_t cap, int32_t vdt) {
    return sd_make_layout(C, F, cap, vdt).S;
}

/* The capacity that a row of S words implies for (C, F, vdt), or -1 if S is not a valid row size
 * (capacity must be 1 .. C*F). */
SD_HD inline int64_t sd_capacity_from_row_words(int32_t C, int32_t F, int32_t vdt, int64_t S) {
    const int64_t fixed = SD_HEADER_WORDS + 5 * (int64_t)sd_num_blocks(F) * C + 1;
    const int64_t vw = sd_value_words(vdt);
    if (S <= fixed) return -1;
    if ((S - fixed) % vw != 0) return -1;
    const int64_t cap = (S - fixed) / vw;
    if (cap < 1 || cap > (int64_t)C * F) return -1;
    return cap;
}

SD_HD inline uint32_t sd_popc(uint32_t x) {
#if defined(__CUDA_ARCH__)
    return (uint32_t)__popc(x);
#else
    return (uint32_t)__builtin_popcount(x);
#endif
}

SD_HD inline uint32_t sd_f2u(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

SD_HD inline float sd_u2f(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* fp32 -> IEEE binary16 bits, round to nearest even; overflow to inf; NaN keeps the top payload bits
 * (as numpy's astype(float16)). Integer-only, hence identical on host and device. */
SD_HD inline uint16_t sd_f32_to_f16(float x) {
    const uint32_t f = sd_f2u(x);
    const uint32_t sign = (f >> 16) & 0x8000u;
    const uint32_t fe = f & 0x7f800000u;
    const uint32_t fm = f & 0x007fffffu;
    if (fe == 0x7f800000u) {
        if (fm == 0) return (uint16_t)(sign | 0x7c00u);
        uint32_t r = 0x7c00u | (fm >> 13);
        if (r == 0x7c00u) r += 1;
        return (uint16_t)(sign | r);
    }
    const int32_t e = (int32_t)(fe >> 23) - 127;
    if (e > 15) return (uint16_t)(sign | 0x7c00u);
    if (e >= -14) {
        uint32_t h = ((uint32_t)(e + 15) << 10) | (fm >> 13);
        const uint32_t rem = fm & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h += 1; /* a carry may reach inf: correct */
        return (uint16_t)(sign | h);
    }
    if (e < -25) return (uint16_t)sign;
    /* subnormal half: round(|x| / 2^-24) */
    const uint32_t m = fm | 0x00800000u;
    const int shift = -e - 1; /* 14 .. 24 */
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) h += 1;
    return (uint16_t)(sign | h);
}

/* binary16 bits -> fp32 (exact) */
SD_HD inline float sd_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t f;
    if (e == 0) {
        if (m == 0) {
            f = sign;
        } else {
            int sh = 0;
            while (!(m & 0x400u)) {
                m <<= 1;
                ++sh;
            }
            m &= 0x3ffu;
            f = sign | ((uint32_t)(113 - sh) << 23) | (m << 13);
        }
    } else if (e == 31) {
        f = sign | 0x7f800000u | (m << 13);
    } else {
        f = sign | ((e + 112u) << 23) | (m << 13);
    }
    return sd_u2f(f);
}

/* value slot `rank` of the values region */
SD_HD inline sd_cf sd_load_value(const int32_t* vals, int64_t rank, int32_t vdt) {
    if (vdt == 1) {
        const uint32_t w = (uint32_t)vals[rank];
        return sd_cf_make(sd_f16_to_f32((uint16_t)(w & 0xffffu)), sd_f16_to_f32((uint16_t)(w >> 16)));
    }
    return sd_cf_make(sd_u2f((uint32_t)vals[2 * rank]), sd_u2f((uint32_t)vals[2 * rank + 1]));
}

SD_HD inline void sd_store_value(int32_t* vals, int64_t rank, int32_t vdt, sd_cf v) {
    if (vdt == 1) {
        const uint32_t w = (uint32_t)sd_f32_to_f16(v.re) | ((uint32_t)sd_f32_to_f16(v.im) << 16);
        vals[rank] = (int32_t)w;
    } else {
        vals[2 * rank] = (int32_t)sd_f2u(v.re);
        vals[2 * rank + 1] = (int32_t)sd_f2u(v.im);
    }
}

/* Word index (within the row) of mask word i (0..3) of block b, channel c. */
SD_HD inline int64_t sd_mask_word(const sd_layout& L, int32_t b, int32_t c, int32_t i) {
    return L.mask_off + ((int64_t)b * L.C + c) * 4 + i;
}

/* Word index of offsets[b*C + c]. */
SD_HD inline int64_t sd_offset_word(const sd_layout& L, int32_t b, int32_t c) {
    return L.offs_off + (int64_t)b * L.C + c;
}

/* Random access to coefficient (c, f) of one row: O(1). *kept = mask bit. A kept coefficient whose
 * rank is not below the capacity (a corrupt row) reads as 0, so no access ever leaves the row. */
SD_HD inline sd_cf sd_packed_get(const int32_t* row, const sd_layout& L, int32_t c, int32_t f, bool* kept) {
    const int32_t b = f >> 7;
    const int32_t j = f & 127;
    const int32_t wi = j >> 5;
    const int32_t bit = j & 31;
    const uint32_t* mw = (const uint32_t*)(row + sd_mask_word(L, b, c, 0));
    const uint32_t w = mw[wi];
    if (!((w >> bit) & 1u)) {
        *kept = false;
        return sd_cf_zero();
    }
    *kept = true;
    uint32_t rank = (uint32_t)row[sd_offset_word(L, b, c)];
    for (int32_t i = 0; i < wi; ++i) rank += sd_popc(mw[i]);
    rank += sd_popc(w & ((1u << bit) - 1u));
    if (rank >= (uint32_t)L.cap) return sd_cf_zero();
    return sd_load_value(row + L.vals_off, rank, L.vdt);
}

SD_HD inline uint32_t sd_hdr_nnz(const int32_t* row) { return (uint32_t)row[SD_HDR_NNZ]; }
SD_HD inline uint32_t sd_hdr_overflowed(const int32_t* row) { return (uint32_t)row[SD_HDR_OVERFLOWED]; }
SD_HD inline float sd_hdr_beta_used(const int32_t* row) { return sd_u2f((uint32_t)row[SD_HDR_BETA_USED]); }
SD_HD inline uint32_t sd_hdr_flags(const int32_t* row) { return (uint32_t)row[SD_HDR_FLAGS]; }

SD_HD inline void sd_write_header(int32_t* row, uint32_t nnz, uint32_t overflowed, float beta_used, uint32_t flags) {
    row[SD_HDR_NNZ] = (int32_t)nnz;
    row[SD_HDR_OVERFLOWED] = (int32_t)overflowed;
    row[SD_HDR_BETA_USED] = (int32_t)sd_f2u(beta_used);
    row[SD_HDR_FLAGS] = (int32_t)(flags & SD_FLAG_NONFINITE);
}

/* Part `tid` of `nthreads` of the flags of one packed input row: its header's bit 0, or any used value
 * slot (min(nnz, capacity) of them) that is not finite. The OR over all parts is the row's flag. */
SD_HD inline uint32_t sd_row_nonfinite_part(const int32_t* row, const sd_layout& L, int32_t tid, int32_t nthreads) {
    uint32_t any = (tid == 0 && (sd_hdr_flags(row) & SD_FLAG_NONFINITE)) ? 1u : 0u;
    const uint32_t nnz = sd_hdr_nnz(row);
    const int64_t used = nnz < (uint32_t)L.cap ? (int64_t)nnz : (int64_t)L.cap;
    const int32_t* vals = row + L.vals_off;
    for (int64_t w = tid; w < used * L.vw; w += nthreads) {
        const uint32_t u = (uint32_t)vals[w];
        if (L.vdt == 1) /* two binary16 halves: exponent all ones = inf or NaN */
            any |= (((u & 0x7c00u) == 0x7c00u) || ((u & 0x7c000000u) == 0x7c000000u)) ? 1u : 0u;
        else /* one binary32 */
            any |= ((u & 0x7f800000u) == 0x7f800000u) ? 1u : 0u;
    }
    return any;
}

#endif /* SPECDEPLOY_PACKED_H */
