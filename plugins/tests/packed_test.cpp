/*
 * C++ tests of the packed-format and threshold code (common/include/specdeploy) and of the
 * pipeline through the host library's C ABI: fuzz-style random round trips, meant to run under
 * ASan + UBSan (cmake -DSPECDEPLOY_SANITIZE=ON; ctest). Exit code 0 = pass.
 *
 * The encoder used as ground truth here is written straight from docs/format.md, independently of
 * the kernels' pipeline.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "specdeploy/packed.h"
#include "specdeploy/specdeploy_c.h"
#include "specdeploy/threshold.h"

#include "test_check.h"

/* ---------------------------------------------------------------------------------------------- */
/* fp16: against a slow reference (exact rational rounding in double)                              */

static uint16_t f16_slow(float x) {
    if (isnan(x)) return 0; /* not compared */
    const uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    if (isinf(x) || a >= 65520.0) return sign | 0x7c00; /* 65520 = max + half ulp: ties to even -> inf */
    /* quantum: subnormal 2^-24; normal 2^(e-10) */
    int e;
    frexp(a, &e); /* a = m 2^e, m in [0.5, 1) -> unbiased exponent e-1 */
    int ub = e - 1;
    if (ub < -14) ub = -14;
    const double q = ldexp(1.0, ub - 10);
    double n = a / q; /* exact (power of two) */
    double r = nearbyint(n); /* default rounding: to nearest even */
    double v = r * q;
    /* encode v (exact in half) */
    if (v == 0.0) return sign;
    int e2;
    frexp(v, &e2);
    int ub2 = e2 - 1;
    if (ub2 < -14) return sign | (uint16_t)(v / ldexp(1.0, -24));
    const uint32_t mant = (uint32_t)(v / ldexp(1.0, ub2 - 10)) - 1024u;
    return sign | (uint16_t)(((ub2 + 15) << 10) | mant);
}

static void test_fp16() {
    /* every half survives half -> float -> half */
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = sd_f16_to_f32((uint16_t)h);
        const uint16_t back = sd_f32_to_f16(f);
        if (((h >> 10) & 31) == 31 && (h & 0x3ff)) {
            CHECK(isnan(f) && ((back >> 10) & 31) == 31 && (back & 0x3ff), "NaN %04x -> %04x", h, back);
        } else {
            CHECK(back == h, "half %04x -> %g -> %04x", h, (double)f, back);
        }
        if (((h >> 10) & 31) != 31) {
            /* exact value check */
            const int e = (h >> 10) & 31, m = h & 0x3ff;
            const double v = (e == 0 ? ldexp((double)m, -24) : ldexp(1.0 + m / 1024.0, e - 15)) * ((h & 0x8000) ? -1 : 1);
            CHECK((double)f == v, "half %04x -> %.10g, want %.10g", h, (double)f, v);
        }
    }
    /* random fp32 bit patterns, and values near the rounding boundaries */
    Rng rng(1);
    for (int i = 0; i < 4000000; ++i) {
        uint32_t u = rng.u32();
        if (i & 1) {
            /* concentrate on the half range: exponent 100 .. 145 */
            u = (u & 0x807fffffu) | ((uint32_t)rng.range(100, 145) << 23);
        }
        if (i % 7 == 0) u = (u & ~0x1fffu) | 0x1000u; /* exact ties for normals */
        const float x = sd_u2f(u);
        if (isnan(x)) continue;
        const uint16_t got = sd_f32_to_f16(x), want = f16_slow(x);
        CHECK(got == want, "f32 %08x (%.9g): got %04x want %04x", u, (double)x, got, want);
    }
    CHECK(sd_f32_to_f16(65504.0f) == 0x7bff, "max");
    CHECK(sd_f32_to_f16(65519.99f) == 0x7bff, "below max+half ulp");
    CHECK(sd_f32_to_f16(65520.0f) == 0x7c00, "tie to inf");
    CHECK(sd_f32_to_f16(-0.0f) == 0x8000, "-0");
    CHECK(sd_f32_to_f16(ldexpf(1.0f, -25)) == 0, "2^-25 tie to 0");
    CHECK(sd_f32_to_f16(ldexpf(1.5f, -25)) == 1, "1.5 * 2^-25 -> 1");
    CHECK(sd_f32_to_f16(ldexpf(1.0f, -24)) == 1, "2^-24");
}

/* ---------------------------------------------------------------------------------------------- */
/* threshold grid                                                                                   */

static float grid_t_slow(float beta, int i) {
    const float base = beta > ldexpf(1.0f, -10) ? beta : ldexpf(1.0f, -10);
    const float m = base * sd_grid_R(i % 8);
    return ldexpf(m, i / 8);
}

static void test_threshold() {
    Rng rng(2);
    const float betas[] = {0.0f, 1e-6f, 0.001f, 0.1f, 0.5f, 1.0f, 3.7f, 1000.0f, 1e10f, 1e30f};
    for (float beta : betas) {
        const float base = sd_grid_base(beta);
        float prev = 0.0f, prev2 = 0.0f;
        for (int i = 1; i < SD_NLEV; ++i) {
            const float t = sd_grid_t(base, i);
            CHECK(sd_f2u(t) == sd_f2u(grid_t_slow(beta, i)), "grid beta=%g i=%d", (double)beta, i);
            CHECK(t >= prev, "grid not monotone beta=%g i=%d", (double)beta, i);
            CHECK(t * t >= prev2, "grid^2 not monotone beta=%g i=%d", (double)beta, i);
            prev = t;
            prev2 = t * t;
        }
        CHECK(isinf(sd_grid_t(base, SD_NLEV) * sd_grid_t(base, SD_NLEV)), "t_NLEV^2 must be inf");
        const float t1 = sd_grid_t(base, 1);
        for (int n = 0; n < 3000; ++n) {
            float m;
            switch (n % 4) {
                case 0: m = sd_u2f(rng.u32() & 0x7fffffffu); break;
                case 1: m = (float)(rng.uniform() * 100.0 * (double)base * (double)base); break;
                case 2: { const float t = sd_grid_t(base, rng.range(1, 700)); m = t * t; break; } /* exact ties */
                default: m = (float)ldexp(rng.uniform(), rng.range(-40, 130)); break;
            }
            if (isnan(m)) continue;
            int lev = 0;
            for (int i = 1; i < SD_NLEV; ++i)
                if (sd_kept_at(m, sd_grid_t(base, i))) lev = i;
            CHECK(sd_level(m, base, t1) == lev, "level beta=%g m=%g: got %d want %d", (double)beta, (double)m,
                  sd_level(m, base, t1), lev);
        }
    }
    CHECK(!sd_kept_at(NAN, 0.0f), "NaN is never kept");
    CHECK(sd_kept_at(INFINITY, 1e18f), "inf kept at finite t with finite t^2");
    CHECK(!sd_kept_at(INFINITY, 1e20f), "t^2 = inf keeps nothing");
    CHECK(!sd_kept_at(0.0f, 0.0f), "0 not kept at 0");

    /* sd_decide against brute force */
    for (int trial = 0; trial < 300; ++trial) {
        const float beta = trial % 3 == 0 ? 0.0f : (float)rng.uniform() * 2.0f;
        const float base = sd_grid_base(beta), t1 = sd_grid_t(base, 1);
        const int n = rng.range(1, 400);
        std::vector<float> m(n);
        for (auto& x : m) {
            const float re = rng.normal() * 3.0f, im = rng.normal() * 3.0f;
            x = sd_abs2(sd_cf_make(re, im));
        }
        std::vector<uint32_t> hist(SD_NLEV, 0);
        uint64_t count0 = 0;
        for (float x : m) {
            if (sd_kept_at(x, beta)) ++count0;
            const int l = sd_level(x, base, t1);
            if (l > 0) hist[l]++;
        }
        const int32_t cap = rng.range(1, n);
        float thr;
        uint32_t own;
        sd_decide(hist.data(), count0, cap, base, beta, &thr, &own);
        if (count0 <= (uint64_t)cap) {
            CHECK(own == 0 && thr == beta, "no overflow expected");
        } else {
            int want = -1;
            for (int i = 1; i <= SD_NLEV && want < 0; ++i) {
                const float t = sd_grid_t(base, i);
                int c = 0;
                for (float x : m) c += sd_kept_at(x, t);
                if (c <= cap) want = i;
            }
            CHECK(own == 1 && sd_f2u(thr) == sd_f2u(sd_grid_t(base, want)), "decide: thr %g want t_%d = %g",
                  (double)thr, want, (double)sd_grid_t(base, want));
        }
    }

    /* the two-level decision (what the pipeline runs) == the one-level rule, on level spreads from
     * one octave to the whole grid, including exact ties at grid points */
    for (int trial = 0; trial < 3000; ++trial) {
        const float beta = trial % 3 == 0 ? 0.0f : (float)rng.uniform() * 2.0f;
        const float base = sd_grid_base(beta), t1 = sd_grid_t(base, 1);
        const int n = rng.range(1, 500);
        const int spread = rng.range(0, 140);
        std::vector<uint32_t> hist(SD_NLEV, 0), coarse(SD_NOCT, 0), fine(SD_NFINE, 0);
        std::vector<int> lev(n);
        uint64_t count0 = 0;
        for (int i = 0; i < n; ++i) {
            float x;
            if (trial % 5 == 0) {
                const float t = sd_grid_t(base, rng.range(1, SD_NLEV - 1));
                x = t * t; /* a tie: level is the one below */
            } else {
                x = (float)ldexp(rng.uniform() + 0.5, rng.range(-spread, spread / 4)) * base * base;
            }
            if (sd_kept_at(x, beta)) ++count0;
            lev[i] = sd_level(x, base, t1);
            if (lev[i] > 0) {
                hist[lev[i]]++;
                coarse[lev[i] >> 3]++;
            }
        }
        const int32_t cap = rng.range(1, n);
        float thr1, thr2;
        uint32_t own1, own2;
        int32_t oct;
        sd_decide(hist.data(), count0, cap, base, beta, &thr1, &own1);
        sd_decide_coarse(coarse.data(), count0, cap, base, beta, &thr2, &own2, &oct);
        if (own2 && oct >= 0) {
            for (int i = 0; i < n; ++i)
                if (lev[i] > 0 && (lev[i] >> 3) == oct) fine[lev[i] & 7]++;
            sd_decide_fine(coarse.data(), fine.data(), oct, cap, base, &thr2);
        }
        CHECK(own1 == own2 && sd_f2u(thr1) == sd_f2u(thr2), "two-level decide: own %u/%u thr %g/%g (oct %d, cap %d)",
              own1, own2, (double)thr1, (double)thr2, oct, cap);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* layout + random access vs an encoder written from the contract                                   */

struct Dense {
    int C, F;
    std::vector<uint8_t> keep; /* [C][F] */
    std::vector<sd_cf> val;    /* [C][F] */
};

static std::vector<int32_t> encode_ref(const Dense& d, int cap, int vdt, uint32_t overflowed, float beta_used) {
    const int NB = (d.F + 127) / 128;
    const int vw = vdt ? 1 : 2;
    const int64_t S = 4 + 5LL * NB * d.C + 1 + (int64_t)cap * vw;
    std::vector<int32_t> row((size_t)S, 0);
    uint32_t nnz = 0;
    const int64_t offs = 4 + 4LL * NB * d.C, vals = offs + (int64_t)NB * d.C + 1;
    for (int b = 0; b < NB; ++b)
        for (int c = 0; c < d.C; ++c) {
            row[(size_t)(offs + (int64_t)b * d.C + c)] = (int32_t)nnz;
            for (int j = 0; j < 128; ++j) {
                const int f = b * 128 + j;
                if (f >= d.F || !d.keep[(size_t)c * d.F + f]) continue;
                row[(size_t)(4 + ((int64_t)b * d.C + c) * 4 + j / 32)] |= (int32_t)(1u << (j % 32));
                const sd_cf v = d.val[(size_t)c * d.F + f];
                if (vdt) {
                    row[(size_t)(vals + nnz)] = (int32_t)((uint32_t)sd_f32_to_f16(v.re) | ((uint32_t)sd_f32_to_f16(v.im) << 16));
                } else {
                    memcpy(&row[(size_t)(vals + 2 * nnz)], &v.re, 4);
                    memcpy(&row[(size_t)(vals + 2 * nnz + 1)], &v.im, 4);
                }
                ++nnz;
            }
        }
    row[(size_t)(offs + (int64_t)NB * d.C)] = (int32_t)nnz;
    row[0] = (int32_t)nnz;
    row[1] = (int32_t)overflowed;
    memcpy(&row[2], &beta_used, 4);
    return row;
}

static Dense random_dense(Rng& rng, int C, int F, double density) {
    Dense d{C, F, std::vector<uint8_t>((size_t)C * F), std::vector<sd_cf>((size_t)C * F)};
    for (size_t i = 0; i < d.keep.size(); ++i) {
        d.keep[i] = rng.uniform() < density;
        if (d.keep[i]) {
            d.val[i] = sd_cf_make(rng.normal(), rng.normal());
            const uint32_t r = rng.u32() % 40;
            if (r == 0) d.val[i] = sd_cf_zero();                                  /* kept zero */
            if (r == 1) d.val[i].re = -0.0f;
            if (r == 2) d.val[i] = sd_cscale(d.val[i], 1e-9f);                    /* fp16 underflow */
        } else {
            d.val[i] = sd_cf_zero();
        }
    }
    return d;
}

static void test_layout_and_get() {
    Rng rng(3);
    for (int trial = 0; trial < 400; ++trial) {
        const int C = rng.range(1, 9);
        const int F = trial % 5 == 0 ? rng.range(1, 3) : rng.range(1, 700);
        const int vdt = trial & 1;
        const Dense d = random_dense(rng, C, F, rng.uniform());
        int nnz = 0;
        for (auto k : d.keep) nnz += k;
        const int cap = rng.range(nnz > 0 ? nnz : 1, C * F);
        const auto row = encode_ref(d, cap, vdt, 0, 0.0f);
        CHECK((int64_t)row.size() == sd_row_words(C, F, cap, vdt), "row words");
        CHECK(sd_packed_row_words(C, F, cap, vdt) == (int64_t)row.size(), "ABI row words");
        CHECK(sd_capacity_from_row_words(C, F, vdt, (int64_t)row.size()) == cap, "capacity from S");
        CHECK(sd_capacity_from_row_words(C, F, vdt, (int64_t)row.size() + 1) == ((vdt && cap < C * F) ? cap + 1 : -1), "S+1");
        const sd_layout L = sd_make_layout(C, F, cap, vdt);
        CHECK(L.S == (int64_t)row.size() && L.NB == (F + 127) / 128, "layout");
        for (int c = 0; c < C; ++c)
            for (int f = 0; f < F; ++f) {
                bool kept;
                const sd_cf v = sd_packed_get(row.data(), L, c, f, &kept);
                const size_t i = (size_t)c * F + f;
                CHECK(kept == (bool)d.keep[i], "kept c=%d f=%d", c, f);
                sd_cf want = d.val[i];
                if (vdt) want = sd_cf_make(sd_f16_to_f32(sd_f32_to_f16(want.re)), sd_f16_to_f32(sd_f32_to_f16(want.im)));
                CHECK(sd_f2u(v.re) == sd_f2u(want.re) && sd_f2u(v.im) == sd_f2u(want.im), "value c=%d f=%d", c, f);
            }
    }
    CHECK(sd_packed_row_words(0, 5, 1, 0) == 0 && sd_packed_row_words(2, 5, 11, 0) == 0 &&
              sd_packed_row_words(2, 5, 0, 0) == 0 && sd_packed_row_words(2, 5, 1, 2) == 0,
          "invalid row words must be 0");
    CHECK(sd_packed_row_words(2, 129, 10, 1) == 4 + 5 * 2 * 2 + 1 + 10, "row words formula");
}

/* ---------------------------------------------------------------------------------------------- */
/* pipeline through the ABI: SpecConcat of random inputs == concatenated dense, with overflow       */

static void check_row_invariants(const std::vector<int32_t>& y, int64_t S, int B, int C, int F, int cap, int vdt) {
    const sd_layout L = sd_make_layout(C, F, cap, vdt);
    for (int s = 0; s < B; ++s) {
        const int32_t* row = y.data() + (int64_t)s * S;
        uint32_t run = 0;
        for (int b = 0; b < L.NB; ++b)
            for (int c = 0; c < C; ++c) {
                CHECK((uint32_t)row[sd_offset_word(L, b, c)] == run, "offsets s=%d b=%d c=%d", s, b, c);
                for (int i = 0; i < 4; ++i) {
                    const uint32_t w = (uint32_t)row[sd_mask_word(L, b, c, i)];
                    for (int j = 0; j < 32; ++j)
                        if ((w >> j) & 1u) CHECK(b * 128 + i * 32 + j < F, "mask bit past F");
                    run += sd_popc(w);
                }
            }
        CHECK((uint32_t)row[L.offs_off + (int64_t)L.NB * C] == run && (uint32_t)row[0] == run, "nnz");
        CHECK(run <= (uint32_t)cap, "nnz <= capacity");
        CHECK(row[3] == 0, "reserved");
        for (int64_t w = L.vals_off + (int64_t)run * L.vw; w < S; ++w) CHECK(row[w] == 0, "unused slot");
    }
}

static void test_concat_pipeline() {
    Rng rng(4);
    for (int trial = 0; trial < 120; ++trial) {
        const int n = rng.range(1, 4);
        const int Hs = rng.range(1, 20), Ws = rng.range(1, 20);
        const int F = Hs * (Ws / 2 + 1);
        const int vdt = trial & 1;
        const int B = rng.range(1, 3);
        sd_spec_concat_params p;
        memset(&p, 0, sizeof(p));
        p.n_inputs = n;
        p.Hs = Hs;
        p.Ws = Ws;
        p.value_dtype = vdt;
        std::vector<std::vector<int32_t>> ins(n);
        std::vector<std::vector<Dense>> dense(n);
        std::vector<uint32_t> upstream(B, 0);
        int Ctot = 0;
        for (int i = 0; i < n; ++i) {
            const int C = rng.range(1, 4);
            p.C[i] = C;
            Ctot += C;
            int cap_i = C * F;
            for (int s = 0; s < B; ++s) {
                dense[i].push_back(random_dense(rng, C, F, rng.uniform()));
                int nnz = 0;
                for (auto k : dense[i][s].keep) nnz += k;
                if (s == 0) cap_i = rng.range(1, C * F);
                (void)nnz;
            }
            /* capacity must hold every sample's nnz */
            for (int s = 0; s < B; ++s) {
                int nnz = 0;
                for (auto k : dense[i][s].keep) nnz += k;
                if (nnz > cap_i) cap_i = nnz;
            }
            for (int s = 0; s < B; ++s) {
                const uint32_t ov = rng.range(0, 5) == 0;
                upstream[s] |= ov;
                const auto row = encode_ref(dense[i][s], cap_i, vdt, ov, 0.0f);
                ins[i].insert(ins[i].end(), row.begin(), row.end());
            }
            p.in_row_words[i] = sd_row_words(C, F, cap_i, vdt);
        }
        /* the expected output: concatenated dense, then the grid if over capacity */
        p.capacity = rng.range(1, Ctot * F);
        CHECK(sd_spec_concat_validate(&p) == SD_OK, "validate: %s", sd_last_error());
        const int64_t S = sd_spec_concat_out_row_words(&p);
        size_t ws = 0;
        CHECK(sd_spec_concat_workspace_size(&p, B, &ws) == SD_OK, "ws");
        std::vector<unsigned char> work(ws + 1);
        std::vector<int32_t> y((size_t)(S * B), 0x5a5a5a5a);
        std::vector<const int32_t*> xs(n);
        for (int i = 0; i < n; ++i) xs[i] = ins[i].data();
        /* an unaligned workspace must work too */
        const sd_status st = sd_spec_concat_forward(&p, B, xs.data(), y.data(), work.data() + 1, ws, nullptr);
        CHECK(st == SD_OK, "forward: %s", sd_last_error());
        check_row_invariants(y, S, B, Ctot, F, p.capacity, vdt);
        for (int s = 0; s < B; ++s) {
            Dense cat{Ctot, F, {}, {}};
            for (int i = 0; i < n; ++i) {
                const Dense& d = dense[i][s];
                for (size_t k = 0; k < d.keep.size(); ++k) {
                    cat.keep.push_back(d.keep[k]);
                    sd_cf v = d.val[k];
                    if (vdt) v = sd_cf_make(sd_f16_to_f32(sd_f32_to_f16(v.re)), sd_f16_to_f32(sd_f32_to_f16(v.im)));
                    cat.val.push_back(v);
                }
            }
            int nnz = 0;
            for (auto k : cat.keep) nnz += k;
            float beta_used = 0.0f;
            uint32_t own = 0;
            if (nnz > p.capacity) {
                own = 1;
                const float base = sd_grid_base(0.0f);
                for (int i = 1;; ++i) {
                    const float t = sd_grid_t(base, i);
                    int cnt = 0;
                    for (size_t k = 0; k < cat.keep.size(); ++k) cnt += cat.keep[k] && sd_kept_at(sd_abs2(cat.val[k]), t);
                    if (cnt <= p.capacity) {
                        beta_used = t;
                        break;
                    }
                }
                for (size_t k = 0; k < cat.keep.size(); ++k)
                    cat.keep[k] = cat.keep[k] && sd_kept_at(sd_abs2(cat.val[k]), beta_used);
            }
            const auto want = encode_ref(cat, p.capacity, vdt, own | upstream[s], beta_used);
            CHECK((int64_t)want.size() == S, "S");
            CHECK(memcmp(want.data(), y.data() + (int64_t)s * S, (size_t)S * 4) == 0,
                  "concat trial %d sample %d differs from the contract encoder", trial, s);
        }
    }
}

/* SpecPool with out == in size: identity (scale 1) */
static void test_pool_identity() {
    Rng rng(5);
    for (int trial = 0; trial < 60; ++trial) {
        const int C = rng.range(1, 5), Hs = rng.range(1, 24), Ws = rng.range(1, 24), vdt = trial & 1, B = 2;
        const int F = Hs * (Ws / 2 + 1);
        std::vector<int32_t> x;
        int cap = C * F;
        for (int s = 0; s < B; ++s) {
            const auto row = encode_ref(random_dense(rng, C, F, rng.uniform()), cap, vdt, (uint32_t)s, 0.0f);
            x.insert(x.end(), row.begin(), row.end());
        }
        sd_spec_pool_params p;
        memset(&p, 0, sizeof(p));
        p.C = C;
        p.Hs = p.out_Hs = Hs;
        p.Ws = p.out_Ws = Ws;
        p.capacity = cap;
        p.value_dtype = vdt;
        p.in_row_words = sd_row_words(C, F, cap, vdt);
        size_t ws = 0;
        CHECK(sd_spec_pool_workspace_size(&p, B, &ws) == SD_OK, "ws: %s", sd_last_error());
        std::vector<unsigned char> work(ws);
        std::vector<int32_t> y(x.size(), -1);
        CHECK(sd_spec_pool_forward(&p, B, x.data(), y.data(), work.data(), ws, nullptr) == SD_OK, "%s", sd_last_error());
        CHECK(y == x, "pool identity trial %d", trial);
    }
}

/* SpecConv (both domains) and SpecToSpatial through the ABI: structural invariants, no reference
 * here (tests/test_native_host.py compares values); meant to catch out-of-bounds access under ASan. */
static void test_conv_and_to_spatial_smoke() {
    Rng rng(6);
    for (int trial = 0; trial < 40; ++trial) {
        const int B = rng.range(1, 3), C = rng.range(1, 4), O = rng.range(1, 10), k = rng.range(1, 4), vdt = trial & 1;
        const bool spatial = (trial % 3) != 0;
        sd_spec_conv_params p;
        memset(&p, 0, sizeof(p));
        p.C = C;
        p.O = O;
        p.k = k;
        p.beta = (float)rng.uniform();
        p.activation = trial & 2 ? SD_ACT_TANH : SD_ACT_NONE;
        p.value_dtype = vdt;
        p.has_bias = trial & 4 ? 1 : 0;
        std::vector<float> xs;
        std::vector<uint16_t> xh;
        std::vector<int32_t> xp;
        const void* x = nullptr;
        if (spatial) {
            p.in_domain = SD_DOMAIN_SPATIAL;
            p.H = rng.range(1, 20);
            p.W = rng.range(1, 20);
            p.Hs = p.H + k - 1;
            p.Ws = p.W + k - 1;
            p.x_type = trial & 8 ? SD_FLOAT16 : SD_FLOAT32;
            xs.resize((size_t)B * C * p.H * p.W);
            for (auto& v : xs) v = rng.normal();
            for (float v : xs) xh.push_back(sd_f32_to_f16(v));
            x = p.x_type == SD_FLOAT16 ? (const void*)xh.data() : (const void*)xs.data();
        } else {
            p.in_domain = SD_DOMAIN_SPECTRAL;
            p.Hs = rng.range(k, 20);
            p.Ws = rng.range(k, 20);
            const int F = p.Hs * (p.Ws / 2 + 1);
            const int cap = C * F;
            for (int s = 0; s < B; ++s) {
                const auto row = encode_ref(random_dense(rng, C, F, rng.uniform()), cap, vdt, (uint32_t)(s & 1), 0.0f);
                xp.insert(xp.end(), row.begin(), row.end());
            }
            p.in_row_words = sd_row_words(C, F, cap, vdt);
            x = xp.data();
        }
        const int F = p.Hs * (p.Ws / 2 + 1);
        p.capacity = rng.range(1, O * F);
        CHECK(sd_spec_conv_validate(&p) == SD_OK, "%s", sd_last_error());
        std::vector<float> w((size_t)O * C * k * k), b((size_t)O);
        for (auto& v : w) v = rng.normal() / (float)k;
        for (auto& v : b) v = rng.normal();
        size_t ws = 0;
        CHECK(sd_spec_conv_workspace_size(&p, B, &ws) == SD_OK, "%s", sd_last_error());
        std::vector<unsigned char> work(ws, 0xa5);
        const int64_t S = sd_spec_conv_out_row_words(&p);
        std::vector<int32_t> y((size_t)(S * B), 0x5a5a5a5a);
        CHECK(sd_spec_conv_forward(&p, B, x, w.data(), p.has_bias ? b.data() : nullptr, y.data(), work.data(), ws,
                                   nullptr) == SD_OK, "%s", sd_last_error());
        check_row_invariants(y, S, B, O, F, p.capacity, vdt);
        if (!spatial) {
            for (int s = 0; s < B; ++s) CHECK((y[(size_t)(s * S + 1)] & 1) >= (s & 1), "sticky overflowed");
            /* SpecToSpatial of the input */
            sd_spec_to_spatial_params q;
            memset(&q, 0, sizeof(q));
            q.C = C;
            q.Hs = p.Hs;
            q.Ws = p.Ws;
            q.value_dtype = vdt;
            q.y_type = trial & 8 ? SD_FLOAT16 : SD_FLOAT32;
            q.in_row_words = p.in_row_words;
            size_t ws2 = 0;
            CHECK(sd_spec_to_spatial_workspace_size(&q, B, &ws2) == SD_OK, "%s", sd_last_error());
            std::vector<unsigned char> work2(ws2);
            std::vector<float> out((size_t)B * C * p.Hs * p.Ws, NAN);
            CHECK(sd_spec_to_spatial_forward(&q, B, xp.data(), out.data(), work2.data(), ws2, nullptr) == SD_OK, "%s",
                  sd_last_error());
            if (q.y_type == SD_FLOAT32)
                for (size_t i = 0; i < out.size(); ++i) CHECK(!isnan(out[i]), "to_spatial output %zu not written", i);
        }
    }
}

/* errors come back as status codes with messages naming the attribute */
static void test_errors() {
    sd_spec_conv_params p;
    memset(&p, 0, sizeof(p));
    p.in_domain = SD_DOMAIN_SPATIAL;
    p.C = 2; p.O = 3; p.H = 6; p.W = 5; p.k = 3; p.Hs = 8; p.Ws = 7;
    p.beta = 0.5f; p.activation = SD_ACT_TANH; p.capacity = 10; p.value_dtype = SD_VALUE_FP16;
    CHECK(sd_spec_conv_validate(&p) == SD_OK, "%s", sd_last_error());
    CHECK(strcmp(sd_last_error(), "") == 0, "cleared");
    sd_spec_conv_params q = p;
    q.beta = -1.0f;
    CHECK(sd_spec_conv_validate(&q) == SD_ERR_INVALID_ARGUMENT && strstr(sd_last_error(), "'beta'"), "%s", sd_last_error());
    q = p;
    q.capacity = 0;
    CHECK(sd_spec_conv_validate(&q) == SD_ERR_INVALID_ARGUMENT && strstr(sd_last_error(), "'capacity'"), "%s", sd_last_error());
    q.capacity = 3 * 8 * 4 + 1;
    CHECK(sd_spec_conv_validate(&q) == SD_ERR_INVALID_ARGUMENT && strstr(sd_last_error(), "'capacity'"), "%s", sd_last_error());
    q = p;
    q.Hs = 9;
    CHECK(sd_spec_conv_validate(&q) == SD_ERR_INVALID_ARGUMENT && strstr(sd_last_error(), "'Hs'"), "%s", sd_last_error());
    q = p;
    q.in_domain = SD_DOMAIN_SPECTRAL;
    q.in_row_words = 12345;
    CHECK(sd_spec_conv_validate(&q) == SD_ERR_INVALID_ARGUMENT && strstr(sd_last_error(), "'in_row_words'"), "%s", sd_last_error());
    size_t ws = 0;
    CHECK(sd_spec_conv_workspace_size(&p, 2, &ws) == SD_OK && ws > 2 * 2 * 32 * 8, "ws %zu", ws);
    std::vector<float> x(2 * 2 * 6 * 5, 1.0f), w(3 * 2 * 9, 0.1f);
    std::vector<int32_t> y((size_t)(2 * sd_spec_conv_out_row_words(&p)));
    std::vector<unsigned char> work(ws);
    CHECK(sd_spec_conv_forward(&p, 2, x.data(), w.data(), nullptr, y.data(), work.data(), ws - 1, nullptr) == SD_ERR_WORKSPACE,
          "small workspace");
    CHECK(sd_spec_conv_forward(&p, 2, x.data(), w.data(), nullptr, y.data(), work.data(), ws, nullptr) == SD_OK, "%s",
          sd_last_error());
    CHECK(sd_spec_conv_forward(&p, -1, x.data(), w.data(), nullptr, y.data(), work.data(), ws, nullptr) ==
              SD_ERR_INVALID_ARGUMENT, "batch < 0");
    CHECK(sd_abi_version() == SD_ABI_VERSION, "abi");
}

int main() {
    test_fp16();
    test_threshold();
    test_layout_and_get();
    test_concat_pipeline();
    test_pool_identity();
    test_conv_and_to_spatial_smoke();
    test_errors();
    if (g_failures) {
        fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    printf("packed_test: all checks passed\n");
    return 0;
}
