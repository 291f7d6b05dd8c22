/*
 * C++ test of the hybrid SpecConv (activation relu, pool none/max2/avg2; DESIGN §2b) through the host
 * library's C ABI, against an independent double-precision implementation written from the contract
 * in the spatial domain: x = irfft2(X) (numpy's convention), circular "same" convolution with the
 * k x k kernel centred at k//2 (spectral input) or the zero-padded full convolution (spatial input),
 * + bias, ReLU, 2x2 ceil-mode pool over the pixels that exist, Z = rfft2(., norm="ortho"), kept iff
 * |Z| > threshold. The library sums in another order (GEMM + direct DFTs in fp32), so the masks must
 * agree except for coefficients within a relative 1e-3 of the threshold (DESIGN §7), and the values
 * within fp32 (fp16) rounding of the largest coefficient.
 * Also: the header flags bit 0 (non-finite input, sticky) and the attribute validation messages.
 * Exit code 0 = pass; meant to run under ASan + UBSan too (cmake -DSPECDEPLOY_SANITIZE=ON).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <complex>
#include <string>
#include <vector>

#include "specdeploy/packed.h"
#include "specdeploy/specdeploy_c.h"

#include "test_check.h"

typedef std::complex<double> cd;

static double round_f16(double x) { return (double)sd_f16_to_f32(sd_f32_to_f16((float)x)); }

/* numpy.fft.irfft2(X, s=(Hs, Ws), norm="ortho"): X is [Hs][Wh] */
static std::vector<double> irfft2(const std::vector<cd>& X, int Hs, int Ws) {
    const int Wh = Ws / 2 + 1;
    const double pi2 = 6.283185307179586476925;
    std::vector<cd> A((size_t)Hs * Wh);
    for (int u = 0; u < Hs; ++u)
        for (int q = 0; q < Wh; ++q) {
            cd acc = 0;
            for (int p = 0; p < Hs; ++p) acc += X[(size_t)p * Wh + q] * std::polar(1.0, pi2 * ((double)p * u / Hs));
            A[(size_t)u * Wh + q] = acc;
        }
    std::vector<double> y((size_t)Hs * Ws);
    for (int u = 0; u < Hs; ++u)
        for (int v = 0; v < Ws; ++v) {
            double acc = 0;
            for (int q = 0; q < Wh; ++q) {
                const double wq = (q == 0 || 2 * q == Ws) ? 1.0 : 2.0;
                acc += wq * (A[(size_t)u * Wh + q] * std::polar(1.0, pi2 * ((double)q * v / Ws))).real();
            }
            y[(size_t)u * Ws + v] = acc / sqrt((double)Hs * Ws);
        }
    return y;
}

/* numpy.fft.rfft2(x, norm="ortho") of [H][W] -> [H][W//2+1] */
static std::vector<cd> rfft2(const std::vector<double>& x, int H, int W) {
    const int Wh = W / 2 + 1;
    const double pi2 = 6.283185307179586476925;
    std::vector<cd> Z((size_t)H * Wh);
    for (int p = 0; p < H; ++p)
        for (int q = 0; q < Wh; ++q) {
            cd acc = 0;
            for (int u = 0; u < H; ++u)
                for (int v = 0; v < W; ++v)
                    acc += x[(size_t)u * W + v] * std::polar(1.0, -pi2 * ((double)p * u / H + (double)q * v / W));
            Z[(size_t)p * Wh + q] = acc / sqrt((double)H * W);
        }
    return Z;
}

struct Case {
    int spectral, C, O, Hs, Ws, k, B, pool, vdt, has_bias, spectrum;
    double kept_in, kept_out, cap_frac; /* cap_frac < 1: force overflow */
};

/* Packed row of C channels of F coefficients with the given mask/values (capacity = nnz, at least 1). */
static std::vector<int32_t> encode(int C, int F, const std::vector<uint8_t>& keep, const std::vector<cd>& val, int vdt,
                                   int* cap_out) {
    int nnz = 0;
    for (uint8_t k : keep) nnz += k;
    const int cap = nnz > 0 ? nnz : 1;
    const sd_layout L = sd_make_layout(C, F, cap, vdt);
    std::vector<int32_t> row((size_t)L.S, 0);
    row[0] = nnz;
    int rank = 0;
    for (int b = 0; b < L.NB; ++b)
        for (int c = 0; c < C; ++c) {
            row[(size_t)sd_offset_word(L, b, c)] = rank;
            for (int j = 0; j < SD_BLOCK_F; ++j) {
                const int f = b * SD_BLOCK_F + j;
                if (f >= F || !keep[(size_t)c * F + f]) continue;
                row[(size_t)sd_mask_word(L, b, c, j >> 5)] |= (int32_t)(1u << (j & 31));
                const cd v = val[(size_t)c * F + f];
                sd_store_value(row.data() + L.vals_off, rank, vdt, sd_cf_make((float)v.real(), (float)v.imag()));
                ++rank;
            }
        }
    row[(size_t)L.offs_off + (size_t)L.NB * C] = rank;
    *cap_out = cap;
    return row;
}

static void run_case(const Case& t, Rng& rng) {
    const int C = t.C, O = t.O, Hs = t.Hs, Ws = t.Ws, k = t.k, B = t.B;
    const int Wh = Ws / 2 + 1, F = Hs * Wh;
    const int oHs = t.pool ? (Hs + 1) / 2 : Hs, oWs = t.pool ? (Ws + 1) / 2 : Ws, oWh = oWs / 2 + 1, oF = oHs * oWh;
    const int H = Hs - k + 1, W = Ws - k + 1;
    char name[160];
    snprintf(name, sizeof(name), "%s C=%d O=%d %dx%d k=%d B=%d pool=%d vdt=%d bias=%d spectrum=%d cap=%.2f",
             t.spectral ? "spectral" : "spatial", C, O, Hs, Ws, k, B, t.pool, t.vdt, t.has_bias, t.spectrum, t.cap_frac);

    std::vector<float> w((size_t)O * C * k * k), bias((size_t)O);
    for (auto& x : w) x = rng.normal() / (float)(k * sqrt((double)C));
    for (auto& x : bias) x = 0.3f * rng.normal();

    /* inputs: x spatial maps per (s, c) as the reference sees them */
    std::vector<std::vector<double>> xs((size_t)B * C);
    std::vector<int32_t> xin;
    std::vector<float> xsp;
    int64_t in_words = 0;
    if (t.spectral) {
        std::vector<std::vector<int32_t>> rows;
        int cap_max = 1;
        std::vector<std::vector<uint8_t>> keeps(B);
        std::vector<std::vector<cd>> vals(B);
        for (int s = 0; s < B; ++s) {
            keeps[s].assign((size_t)C * F, 0);
            vals[s].assign((size_t)C * F, 0);
            int nnz = 0;
            for (int i = 0; i < C * F; ++i)
                if (rng.uniform() < t.kept_in) {
                    keeps[s][i] = 1;
                    double re = rng.normal(), im = rng.normal();
                    if (t.vdt == 1) {
                        re = round_f16(re);
                        im = round_f16(im);
                    }
                    vals[s][i] = cd(re, im);
                    ++nnz;
                }
            cap_max = std::max(cap_max, nnz);
        }
        /* one capacity for all rows: the largest nnz */
        for (int s = 0; s < B; ++s) {
            int cap;
            std::vector<int32_t> row = encode(C, F, keeps[s], vals[s], t.vdt, &cap);
            const sd_layout L = sd_make_layout(C, F, cap_max, t.vdt);
            std::vector<int32_t> full((size_t)L.S, 0);
            /* re-encode with capacity cap_max: same mask/offsets, values region longer */
            const sd_layout L0 = sd_make_layout(C, F, cap, t.vdt);
            memcpy(full.data(), row.data(), sizeof(int32_t) * (size_t)L0.vals_off);
            memcpy(full.data() + L.vals_off, row.data() + L0.vals_off, sizeof(int32_t) * (size_t)(L0.S - L0.vals_off));
            if (s == 1) full[1] = 1; /* an upstream overflow: sticky */
            rows.push_back(full);
            in_words = L.S;
        }
        for (auto& r : rows) xin.insert(xin.end(), r.begin(), r.end());
        for (int s = 0; s < B; ++s)
            for (int c = 0; c < C; ++c) {
                std::vector<cd> X(vals[s].begin() + (size_t)c * F, vals[s].begin() + (size_t)(c + 1) * F);
                xs[(size_t)s * C + c] = irfft2(X, Hs, Ws);
            }
    } else {
        xsp.resize((size_t)B * C * H * W);
        for (auto& x : xsp) x = rng.normal();
        for (int s = 0; s < B; ++s)
            for (int c = 0; c < C; ++c) {
                std::vector<double> pad((size_t)Hs * Ws, 0.0);
                for (int i = 0; i < H; ++i)
                    for (int j = 0; j < W; ++j) pad[(size_t)i * Ws + j] = xsp[(((size_t)s * C + c) * H + i) * W + j];
                xs[(size_t)s * C + c] = pad;
            }
    }

    /* reference Z [B][O][oF] */
    const int ctr = t.spectral ? k / 2 : 0;
    std::vector<cd> Zref((size_t)B * O * oF);
    double zmax = 0.0;
    for (int s = 0; s < B; ++s)
        for (int o = 0; o < O; ++o) {
            std::vector<double> y((size_t)Hs * Ws, 0.0);
            for (int c = 0; c < C; ++c) {
                const std::vector<double>& x = xs[(size_t)s * C + c];
                for (int u = 0; u < k; ++u)
                    for (int v = 0; v < k; ++v) {
                        const double wv = w[(((size_t)o * C + c) * k + u) * k + v];
                        for (int i = 0; i < Hs; ++i)
                            for (int j = 0; j < Ws; ++j) {
                                const int ii = ((i - u + ctr) % Hs + Hs) % Hs, jj = ((j - v + ctr) % Ws + Ws) % Ws;
                                y[(size_t)i * Ws + j] += wv * x[(size_t)ii * Ws + jj];
                            }
                    }
            }
            for (auto& v : y) {
                if (t.has_bias) v += bias[(size_t)o];
                v = v > 0 ? v : 0;
            }
            std::vector<double> yp((size_t)oHs * oWs);
            for (int i = 0; i < oHs; ++i)
                for (int j = 0; j < oWs; ++j) {
                    if (!t.pool) {
                        yp[(size_t)i * oWs + j] = y[(size_t)i * Ws + j];
                        continue;
                    }
                    double mx = -1e300, sum = 0;
                    int n = 0;
                    for (int di = 0; di < 2; ++di)
                        for (int dj = 0; dj < 2; ++dj) {
                            const int ii = 2 * i + di, jj = 2 * j + dj;
                            if (ii >= Hs || jj >= Ws) continue;
                            mx = std::max(mx, y[(size_t)ii * Ws + jj]);
                            sum += y[(size_t)ii * Ws + jj];
                            ++n;
                        }
                    yp[(size_t)i * oWs + j] = t.pool == SD_POOL_MAX2 ? mx : sum / n;
                }
            std::vector<cd> Z = rfft2(yp, oHs, oWs);
            for (int f = 0; f < oF; ++f) {
                Zref[((size_t)s * O + o) * oF + f] = Z[(size_t)f];
                zmax = std::max(zmax, std::abs(Z[(size_t)f]));
            }
        }
    /* beta: keeps about kept_out of all coefficients */
    std::vector<double> mags;
    for (auto& z : Zref) mags.push_back(std::abs(z));
    std::sort(mags.begin(), mags.end());
    const double beta = mags[(size_t)((1.0 - t.kept_out) * (mags.size() - 1))] * 1.0001;
    int cap = (int)(t.cap_frac * (double)O * oF * t.kept_out);
    cap = std::max(1, std::min(cap, O * oF));

    sd_spec_conv_params p;
    memset(&p, 0, sizeof(p));
    p.in_domain = t.spectral ? SD_DOMAIN_SPECTRAL : SD_DOMAIN_SPATIAL;
    p.C = C;
    p.O = O;
    p.H = t.spectral ? 0 : H;
    p.W = t.spectral ? 0 : W;
    p.Hs = Hs;
    p.Ws = Ws;
    p.k = k;
    p.beta = (float)beta;
    p.activation = SD_ACT_RELU;
    p.pool = t.pool;
    p.capacity = cap;
    p.value_dtype = t.vdt;
    p.x_type = SD_FLOAT32;
    p.has_bias = t.has_bias;
    p.input_spectrum = t.spectrum;
    p.in_row_words = t.spectral ? in_words : 0;
    CHECK(sd_spec_conv_validate(&p) == SD_OK, "%s: validate: %s", name, sd_last_error());
    const int64_t S = sd_spec_conv_out_row_words(&p);
    CHECK(S == sd_packed_row_words(O, oF, cap, t.vdt), "%s: out row words %lld", name, (long long)S);
    size_t ws = 0;
    CHECK(sd_spec_conv_workspace_size(&p, B, &ws) == SD_OK, "%s: ws: %s", name, sd_last_error());
    std::vector<unsigned char> wsb(ws + 1);
    std::vector<int32_t> y((size_t)B * S, 0x5a5a5a5a);
    /* a misaligned workspace pointer is fine by the ABI */
    const sd_status st = sd_spec_conv_forward(&p, B, t.spectral ? (const void*)xin.data() : (const void*)xsp.data(),
                                              w.data(), t.has_bias ? bias.data() : nullptr, y.data(), wsb.data() + 1, ws,
                                              nullptr);
    CHECK(st == SD_OK, "%s: forward: %s", name, sd_last_error());
    if (st != SD_OK) return;
    /* too small a workspace is refused */
    CHECK(sd_spec_conv_forward(&p, B, t.spectral ? (const void*)xin.data() : (const void*)xsp.data(), w.data(),
                               t.has_bias ? bias.data() : nullptr, y.data(), wsb.data(), ws - 1, nullptr) == SD_ERR_WORKSPACE,
          "%s: small workspace accepted", name);
    sd_spec_conv_forward(&p, B, t.spectral ? (const void*)xin.data() : (const void*)xsp.data(), w.data(),
                         t.has_bias ? bias.data() : nullptr, y.data(), wsb.data(), ws, nullptr);

    const sd_layout L = sd_make_layout(O, oF, cap, t.vdt);
    const double vtol = (t.vdt == 1 ? 2e-3 : 2e-5) * zmax;
    int mismatches = 0, near = 0, kept_total = 0, overflowed = 0;
    for (int s = 0; s < B; ++s) {
        const int32_t* row = y.data() + (size_t)s * S;
        const uint32_t nnz = sd_hdr_nnz(row), ovf = sd_hdr_overflowed(row);
        const float thr = sd_hdr_beta_used(row);
        CHECK(sd_hdr_flags(row) == 0u, "%s s=%d: flags %u on finite input", name, s, sd_hdr_flags(row));
        CHECK(nnz <= (uint32_t)cap, "%s s=%d: nnz %u > cap %d", name, s, nnz, cap);
        if (t.spectral && s == 1) CHECK(ovf == 1u, "%s: upstream overflow not sticky", name);
        if (t.cap_frac >= 10.0 && !(t.spectral && s == 1)) CHECK(ovf == 0u && thr == (float)beta, "%s s=%d: overflowed", name, s);
        const double tt = (double)thr;
        kept_total += (int)nnz;
        overflowed += (int)ovf;
        for (int o = 0; o < O; ++o)
            for (int f = 0; f < oF; ++f) {
                bool kept;
                const sd_cf v = sd_packed_get(row, L, o, f, &kept);
                const cd z = Zref[((size_t)s * O + o) * oF + f];
                const double m = std::abs(z);
                const bool want = m > tt;
                if (fabs(m - tt) <= 1e-3 * tt) {
                    ++near;
                    continue; /* DESIGN §7: within a relative 1e-3 of the threshold either way is right */
                }
                if (kept != want) {
                    if (++mismatches <= 5)
                        fprintf(stderr, "%s s=%d o=%d f=%d: |Z| = %.9g thr %.9g kept %d\n", name, s, o, f, m, tt, (int)kept);
                    continue;
                }
                if (kept && (fabs(v.re - z.real()) > vtol || fabs(v.im - z.imag()) > vtol)) {
                    if (++mismatches <= 5)
                        fprintf(stderr, "%s s=%d o=%d f=%d: value (%g, %g) want (%g, %g)\n", name, s, o, f, (double)v.re,
                                (double)v.im, z.real(), z.imag());
                }
            }
    }
    CHECK(mismatches == 0, "%s: %d mismatches (%d within the tolerance band)", name, mismatches, near);
    CHECK(kept_total > 0, "%s: nothing kept: the comparison would be vacuous", name);
    if (t.cap_frac < 1.0) CHECK(overflowed > 0, "%s: the overflow case did not overflow", name);
    printf("%s: %d kept, %d overflowed samples, %d near the threshold\n", name, kept_total, overflowed, near);
}

static void test_flags() {
    /* a non-finite spatial value sets flags bit 0 of its sample only; the next (spectral) op keeps it */
    Rng rng(7);
    const int B = 3, C = 2, O = 3, H = 6, W = 5, k = 3, Hs = H + k - 1, Ws = W + k - 1, F = Hs * (Ws / 2 + 1);
    std::vector<float> x((size_t)B * C * H * W), w((size_t)O * C * k * k), w2((size_t)O * O * k * k);
    for (auto& v : x) v = rng.normal();
    for (auto& v : w) v = rng.normal();
    for (auto& v : w2) v = rng.normal();
    x[(size_t)1 * C * H * W + 7] = NAN;
    for (int act : {SD_ACT_TANH, SD_ACT_RELU}) {
        sd_spec_conv_params p;
        memset(&p, 0, sizeof(p));
        p.in_domain = SD_DOMAIN_SPATIAL;
        p.C = C;
        p.O = O;
        p.H = H;
        p.W = W;
        p.Hs = Hs;
        p.Ws = Ws;
        p.k = k;
        p.beta = 0.1f;
        p.activation = act;
        p.capacity = O * F;
        p.value_dtype = SD_VALUE_FP16;
        size_t ws;
        CHECK(sd_spec_conv_workspace_size(&p, B, &ws) == SD_OK, "flags ws: %s", sd_last_error());
        const int64_t S = sd_spec_conv_out_row_words(&p);
        std::vector<int32_t> y((size_t)B * S);
        std::vector<unsigned char> wsb(ws);
        CHECK(sd_spec_conv_forward(&p, B, x.data(), w.data(), nullptr, y.data(), wsb.data(), ws, nullptr) == SD_OK,
              "flags forward: %s", sd_last_error());
        for (int s = 0; s < B; ++s)
            CHECK(sd_hdr_flags(y.data() + (size_t)s * S) == (s == 1 ? 1u : 0u), "act %d sample %d flags %u", act, s,
                  sd_hdr_flags(y.data() + (size_t)s * S));
        /* downstream: a spectral SpecConv, then a SpecPool, keep the flag (sticky) */
        sd_spec_conv_params q = p;
        q.in_domain = SD_DOMAIN_SPECTRAL;
        q.C = O;
        q.H = q.W = 0;
        q.in_row_words = S;
        q.pool = act == SD_ACT_RELU ? SD_POOL_MAX2 : SD_POOL_NONE;
        const int oF = act == SD_ACT_RELU ? ((Hs + 1) / 2) * (((Ws + 1) / 2) / 2 + 1) : F;
        q.capacity = O * oF;
        CHECK(sd_spec_conv_workspace_size(&q, B, &ws) == SD_OK, "flags ws2: %s", sd_last_error());
        const int64_t S2 = sd_spec_conv_out_row_words(&q);
        std::vector<int32_t> y2((size_t)B * S2);
        wsb.assign(ws, 0);
        /* sample 2's row gets an injected non-finite value too (a corrupt value, not a flag) */
        const sd_layout L = sd_make_layout(O, F, O * F, SD_VALUE_FP16);
        if (sd_hdr_nnz(y.data() + 2 * S) > 0) y[(size_t)(2 * S + L.vals_off)] = 0x7c00; /* re = +inf */
        CHECK(sd_spec_conv_forward(&q, B, y.data(), w2.data(), nullptr, y2.data(), wsb.data(), ws, nullptr) == SD_OK,
              "flags forward2: %s", sd_last_error());
        for (int s = 0; s < B; ++s) {
            const uint32_t want = s == 0 ? 0u : (s == 1 ? 1u : (sd_hdr_nnz(y.data() + 2 * S) > 0 ? 1u : 0u));
            CHECK(sd_hdr_flags(y2.data() + (size_t)s * S2) == want, "act %d downstream sample %d flags %u", act, s,
                  sd_hdr_flags(y2.data() + (size_t)s * S2));
        }
        sd_spec_pool_params pp;
        memset(&pp, 0, sizeof(pp));
        pp.C = O;
        pp.Hs = q.pool ? (Hs + 1) / 2 : Hs;
        pp.Ws = q.pool ? (Ws + 1) / 2 : Ws;
        pp.out_Hs = (pp.Hs + 1) / 2;
        pp.out_Ws = (pp.Ws + 1) / 2;
        pp.capacity = O * pp.out_Hs * (pp.out_Ws / 2 + 1);
        pp.value_dtype = SD_VALUE_FP16;
        pp.in_row_words = S2;
        CHECK(sd_spec_pool_workspace_size(&pp, B, &ws) == SD_OK, "pool ws: %s", sd_last_error());
        std::vector<int32_t> y3((size_t)B * sd_spec_pool_out_row_words(&pp));
        wsb.assign(ws, 0);
        CHECK(sd_spec_pool_forward(&pp, B, y2.data(), y3.data(), wsb.data(), ws, nullptr) == SD_OK, "pool: %s",
              sd_last_error());
        CHECK(sd_hdr_flags(y3.data() + sd_spec_pool_out_row_words(&pp)) == 1u, "pool drops the flag");
        CHECK(sd_hdr_flags(y3.data()) == 0u, "pool invents a flag");
    }
}

static bool msg_has(const char* needle) { return strstr(sd_last_error(), needle) != nullptr; }

static void test_validation() {
    sd_spec_conv_params p;
    memset(&p, 0, sizeof(p));
    p.in_domain = SD_DOMAIN_SPECTRAL;
    p.C = 2;
    p.O = 3;
    p.Hs = 8;
    p.Ws = 7;
    p.k = 3;
    p.beta = 0.5f;
    p.activation = SD_ACT_RELU;
    p.pool = SD_POOL_AVG2;
    p.value_dtype = SD_VALUE_FP32;
    const int F = 8 * 4, oF = 4 * (4 / 2 + 1);
    p.in_row_words = sd_packed_row_words(2, F, 10, 0);
    p.capacity = 3 * oF;
    CHECK(sd_spec_conv_validate(&p) == SD_OK, "valid hybrid: %s", sd_last_error());
    CHECK(sd_spec_conv_out_row_words(&p) == sd_packed_row_words(3, oF, 3 * oF, 0), "pooled row words");
    p.capacity = 3 * oF + 1;
    CHECK(sd_spec_conv_validate(&p) == SD_ERR_INVALID_ARGUMENT && msg_has("'capacity'") && msg_has("pooled"),
          "capacity over the pooled size: %s", sd_last_error());
    p.capacity = 3 * oF;
    p.pool = 3;
    CHECK(sd_spec_conv_validate(&p) == SD_ERR_INVALID_ARGUMENT && msg_has("'pool' = 3"), "pool 3: %s", sd_last_error());
    p.pool = SD_POOL_MAX2;
    p.activation = SD_ACT_TANH;
    CHECK(sd_spec_conv_validate(&p) == SD_ERR_INVALID_ARGUMENT && msg_has("'pool'") && msg_has("relu"),
          "pool without relu: %s", sd_last_error());
    p.activation = 3;
    CHECK(sd_spec_conv_validate(&p) == SD_ERR_INVALID_ARGUMENT && msg_has("'activation' = 3") && msg_has("relu"),
          "activation 3: %s", sd_last_error());
    CHECK(sd_abi_version() == SD_ABI_VERSION && SD_ABI_VERSION == 3, "ABI version");
}

int main() {
    Rng rng(11);
    const Case cases[] = {
        /* spectral, C, O, Hs, Ws, k, B, pool, vdt, bias, spectrum, kept_in, kept_out, cap_frac */
        {1, 3, 5, 8, 8, 3, 2, SD_POOL_NONE, 0, 1, 0, 0.5, 0.3, 100.0},
        {1, 4, 20, 9, 7, 3, 6, SD_POOL_MAX2, 0, 1, 0, 0.3, 0.25, 100.0},
        {1, 5, 17, 7, 10, 5, 5, SD_POOL_AVG2, 1, 0, 0, 0.6, 0.3, 100.0},
        {1, 3, 8, 6, 6, 1, 3, SD_POOL_MAX2, 1, 1, 0, 1.0, 0.4, 100.0},
        {1, 2, 9, 5, 5, 3, 5, SD_POOL_NONE, 0, 1, 0, 0.7, 0.4, 0.5}, /* overflow: grid threshold */
        {1, 6, 4, 130, 3, 3, 2, SD_POOL_AVG2, 0, 1, 0, 0.2, 0.2, 100.0}, /* F > 128: several input blocks */
        {0, 3, 6, 10, 9, 3, 5, SD_POOL_MAX2, 0, 1, SD_SPECTRUM_DENSE, 0, 0.3, 100.0},
        {0, 2, 18, 8, 8, 5, 2, SD_POOL_NONE, 1, 1, SD_SPECTRUM_STREAMED, 0, 0.3, 100.0},
        {0, 1, 4, 7, 7, 2, 3, SD_POOL_AVG2, 0, 0, SD_SPECTRUM_AUTO, 0, 0.35, 0.6},
    };
    for (const Case& c : cases) run_case(c, rng);
    test_flags();
    test_validation();
    if (g_failures) {
        fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    printf("hybrid_test: all checks passed\n");
    return 0;
}
