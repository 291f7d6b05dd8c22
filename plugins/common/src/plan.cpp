/* Validation, derived sizes and workspace layouts of the four ops, and the C ABI functions that need
 * no device work. Compiled into both libspecdeploy_host and libspecdeploy_kernels. */
#include "specdeploy/plan.h"

#include <math.h>
#include <stdio.h>

#include "specdeploy/status.h"
#include "specdeploy/threshold.h"

namespace sd {

namespace {

constexpr int64_t kI32Max = 0x7fffffffLL;
constexpr int64_t kHybMaxCols = kI32Max - 64; /* hybrid GEMM columns: a 64-wide tile past the last stays in int32 */
constexpr int64_t kBytesMax = (int64_t)1 << 60;

size_t align_up(size_t x) { return (x + kWsAlign - 1) & ~(size_t)(kWsAlign - 1); }

struct WsBuilder {
    size_t off = 0;
    size_t take(size_t bytes) {
        const size_t o = off;
        off += align_up(bytes);
        return o;
    }
    size_t total() const { return off + kWsAlign; /* slack for aligning an unaligned base */ }
};

/* The two-level level histogram [B, SD_HIST_WORDS = 83], then the per-sample threshold, owner,
 * overflow flag, octave and header-flags words in one sub-buffer (4-byte types: no padding between
 * them). specdeploy's planner ports this layout (the declared workspace) and a CI test holds the two
 * equal. */
void plan_pipe_ws(WsBuilder& wb, int32_t B, PipeWs* ws) {
    ws->hist = wb.take(sizeof(uint32_t) * (size_t)B * SD_HIST_WORDS);
    ws->thr = wb.take(sizeof(uint32_t) * 5 * (size_t)B);
    ws->own = ws->thr + sizeof(float) * (size_t)B;
    ws->flag = ws->own + sizeof(uint32_t) * (size_t)B;
    ws->oct = ws->flag + sizeof(uint32_t) * (size_t)B;
    ws->nf = ws->oct + sizeof(int32_t) * (size_t)B;
}

/* The DFT twiddle tables of the Hs- and Ws-point transforms (SpecConv, SpecToSpatial). */
void plan_twiddle_ws(WsBuilder& wb, int32_t Hs, int32_t Ws, size_t* tw_h, size_t* tw_w) {
    *tw_h = wb.take(sizeof(sd_cf) * (size_t)Hs);
    *tw_w = wb.take(sizeof(sd_cf) * (size_t)Ws);
}

/* The hybrid chunk's buffers (ConvPlan h_y, h_a) in bytes, each aligned as WsBuilder takes it: one
 * complex plane of F per (sample, channel) of the chunk, two for F > kHybSmemMaxF (plan.h). */
double hyb_chunk_bytes(int32_t F, int32_t sb, int32_t ot) {
    const double planes = F > kHybSmemMaxF ? 2.0 : 1.0;
    return planes * (double)align_up(sizeof(sd_cf) * (size_t)sb * (size_t)ot * (size_t)F);
}

/* The hybrid chunk (plan.h): of sb in 1, 2, 4, .. (clamped to B) and ot in 8, 16, 32, .. (clamped to
 * O), the one with the fewest chunks ceil(B/sb) * ceil(O/ot) whose buffers fit
 * B * (C + O) * Hs * Ws * 2 / kHybBudgetDiv bytes; ties: the smaller buffers, then the larger ot (a
 * fuller GEMM tile). None fits: 1 x min(O, 8). Fewest chunks because the GPU's time per call grows
 * with its launches, a fixed few per chunk and pass (docs/kernels.md). */
void hyb_chunk(int32_t B, int32_t C, int32_t O, int32_t Hs, int32_t Ws, int32_t F, int32_t* sb, int32_t* ot) {
    const double budget = (double)B * ((double)C + O) * Hs * Ws * 2.0 / kHybBudgetDiv;
    *sb = 1;
    *ot = O < 8 ? O : 8;
    if (B < 1) return;
    int64_t best_chunks = -1;
    double best_bytes = 0.0;
    for (int64_t s0 = 1;; s0 *= 2) {
        const int32_t s = (int32_t)(s0 < B ? s0 : B);
        for (int64_t o0 = 8;; o0 *= 2) {
            const int32_t o = (int32_t)(o0 < O ? o0 : O);
            const double bytes = hyb_chunk_bytes(F, s, o);
            /* the GEMM's columns fit int32, its 64-row tiles a grid's y, the chunk's planes a grid's x */
            if (bytes <= budget && (int64_t)s * 2 * F <= kHybMaxCols && (int64_t)o <= kHybMaxChannels &&
                (int64_t)s * o <= kI32Max) {
                const int64_t chunks = ((int64_t)B + s - 1) / s * (((int64_t)O + o - 1) / o);
                if (best_chunks < 0 || chunks < best_chunks || (chunks == best_chunks && bytes < best_bytes) ||
                    (chunks == best_chunks && bytes == best_bytes && o > *ot)) {
                    best_chunks = chunks;
                    best_bytes = bytes;
                    *sb = s;
                    *ot = o;
                }
            }
            if (o0 >= O) break;
        }
        if (s0 >= B) break;
    }
}

const char* dtype_name(int32_t v) { return v == 0 ? "fp32" : v == 1 ? "fp16" : "?"; }

sd_status check_range(const char* op, const char* attr, int64_t v, int64_t lo, int64_t hi, const char* why = nullptr) {
    if (v < lo || v > hi)
        return fail(SD_ERR_INVALID_ARGUMENT, "%s: attribute '%s' = %lld is invalid: must be in %lld..%lld%s%s", op, attr,
                    (long long)v, (long long)lo, (long long)hi, why ? " " : "", why ? why : "");
    return SD_OK;
}

sd_status check_value_dtype(const char* op, int32_t v) {
    if (v != SD_VALUE_FP32 && v != SD_VALUE_FP16)
        return fail(SD_ERR_INVALID_ARGUMENT, "%s: attribute 'value_dtype' = %d is invalid: must be 0 (\"fp32\") or 1 (\"fp16\")", op,
                    v);
    return SD_OK;
}

sd_status check_float_type(const char* op, const char* name, int32_t v) {
    if (v != SD_FLOAT32 && v != SD_FLOAT16)
        return fail(SD_ERR_INVALID_ARGUMENT, "%s: '%s' = %d must be 0 (float32) or 1 (float16)", op, name, v);
    return SD_OK;
}

sd_status check_batch(const char* op, int32_t batch) {
    if (batch < 0) return fail(SD_ERR_INVALID_ARGUMENT, "%s: batch = %d must be >= 0", op, batch);
    return SD_OK;
}

/* F = Hs * (Ws // 2 + 1), bounded so that every element count fits int32 */
sd_status spectral_size(const char* op, int32_t Hs, int32_t Ws, int32_t* F) {
    sd_status st;
    if ((st = check_range(op, "Hs", Hs, 1, kI32Max)) != SD_OK) return st;
    if ((st = check_range(op, "Ws", Ws, 1, kI32Max)) != SD_OK) return st;
    const int64_t f = (int64_t)Hs * (Ws / 2 + 1);
    if (f > kI32Max)
        return fail(SD_ERR_INVALID_ARGUMENT, "%s: Hs * (Ws // 2 + 1) = %lld coefficients per channel exceeds 2^31 - 1",
                    op, (long long)f);
    *F = (int32_t)f;
    return SD_OK;
}

/* A packed input with C channels of F coefficients: the row size implies the capacity. */
sd_status packed_input(const char* op, const char* attr, int32_t C, int32_t F, int32_t vdt, int64_t S, sd_layout* L) {
    const int64_t cap = sd_capacity_from_row_words(C, F, vdt, S);
    if (cap < 0) {
        const int64_t fixed = SD_HEADER_WORDS + 5 * (int64_t)sd_num_blocks(F) * C + 1;
        const int64_t vw = sd_value_words(vdt);
        return fail(SD_ERR_INVALID_ARGUMENT,
                    "%s: attribute '%s' = %lld is not a valid packed row size for C=%d, F=%d, value_dtype=%s: must be "
                    "%lld + capacity * %lld with 1 <= capacity <= C*F = %lld, i.e. in [%lld, %lld]",
                    op, attr, (long long)S, C, F, dtype_name(vdt), (long long)fixed, (long long)vw,
                    (long long)C * F, (long long)(fixed + vw), (long long)(fixed + vw * (int64_t)C * F));
    }
    *L = sd_make_layout(C, F, (int32_t)cap, vdt);
    return SD_OK;
}

sd_status bytes_ok(const char* op, double bytes) {
    if (bytes > (double)kBytesMax) return fail(SD_ERR_INVALID_ARGUMENT, "%s: workspace of %.3g bytes is too large", op, bytes);
    return SD_OK;
}

}  // namespace

sd_status check_workspace(const char* what, const void* workspace, size_t have, size_t need) {
    if (have < need)
        return fail(SD_ERR_WORKSPACE, "%s: workspace_bytes = %zu is smaller than the %zu bytes the op needs (query "
                    "the *_workspace_size function)", what, have, need);
    if (need > 0 && workspace == nullptr) return fail(SD_ERR_WORKSPACE, "%s: workspace is NULL", what);
    return SD_OK;
}

sd_status check_ptr(const char* what, const char* name, const void* ptr) {
    if (ptr == nullptr) return fail(SD_ERR_INVALID_ARGUMENT, "%s: pointer '%s' is NULL", what, name);
    return SD_OK;
}

bool conv_streams_input(int32_t O, int32_t H, int32_t W, int32_t k, int32_t C, bool hybrid) {
    if (hybrid && C > kHybStreamMaxC) return false;
    /* exact for every int32 input (both sides stay below 2^100), as the Python port with its integers;
     * __extension__: GCC/Clang's 128-bit integer without a -Wpedantic warning */
    __extension__ typedef unsigned __int128 u128;
    const u128 tiles = ((u128)(uint32_t)O + 7) / 8;
    const u128 recompute = tiles * ((u128)(uint32_t)H * (uint32_t)W + (uint32_t)H);
    const u128 own = (u128)(uint32_t)O * ((u128)(uint32_t)k * (uint32_t)k + (uint32_t)k + 1);
    return recompute <= 8 * own;
}

sd_status plan_conv(const sd_spec_conv_params* p, int32_t batch, ConvPlan* out) {
    const char* op = "SpecConv";
    sd_status st;
    if (!p) return fail(SD_ERR_INVALID_ARGUMENT, "%s: params is NULL", op);
    if ((st = check_batch(op, batch)) != SD_OK) return st;
    ConvPlan P;
    P.B = batch;
    if (p->in_domain != SD_DOMAIN_SPATIAL && p->in_domain != SD_DOMAIN_SPECTRAL)
        return fail(SD_ERR_INVALID_ARGUMENT, "%s: attribute 'in_domain' = %d is invalid: must be 0 (\"spatial\") or 1 (\"spectral\")",
                    op, p->in_domain);
    if ((st = check_range(op, "C", p->C, 1, kI32Max)) != SD_OK) return st;
    if ((st = check_range(op, "O", p->O, 1, kI32Max, "(output channels = W.shape[0])")) != SD_OK) return st;
    if ((st = check_range(op, "k", p->k, 1, kI32Max)) != SD_OK) return st;
    if (!(p->beta >= 0.0f) || !isfinite(p->beta))
        return fail(SD_ERR_INVALID_ARGUMENT, "%s: attribute 'beta' = %g is invalid: must be a finite number >= 0", op,
                    (double)p->beta);
    if (p->activation != SD_ACT_NONE && p->activation != SD_ACT_TANH && p->activation != SD_ACT_RELU)
        return fail(SD_ERR_INVALID_ARGUMENT,
                    "%s: attribute 'activation' = %d is invalid: must be 0 (\"none\"), 1 (\"tanh\") or 2 (\"relu\")", op,
                    p->activation);
    if (p->pool != SD_POOL_NONE && p->pool != SD_POOL_MAX2 && p->pool != SD_POOL_AVG2)
        return fail(SD_ERR_INVALID_ARGUMENT,
                    "%s: attribute 'pool' = %d is invalid: must be 0 (\"none\"), 1 (\"max2\") or 2 (\"avg2\")", op, p->pool);
    if (p->pool != SD_POOL_NONE && p->activation != SD_ACT_RELU)
        return fail(SD_ERR_INVALID_ARGUMENT,
                    "%s: attribute 'pool' = %d (\"%s\") is invalid with activation = %d (\"%s\"): pool needs activation "
                    "\"relu\" (hybrid block; paper models pool with SpecPool)",
                    op, p->pool, p->pool == SD_POOL_MAX2 ? "max2" : "avg2", p->activation,
                    p->activation == SD_ACT_TANH ? "tanh" : "none");
    if ((st = check_value_dtype(op, p->value_dtype)) != SD_OK) return st;
    if (p->has_bias != 0 && p->has_bias != 1)
        return fail(SD_ERR_INVALID_ARGUMENT, "%s: 'has_bias' = %d must be 0 or 1", op, p->has_bias);
    if ((st = spectral_size(op, p->Hs, p->Ws, &P.F)) != SD_OK) return st;
    P.C = p->C;
    P.O = p->O;
    P.k = p->k;
    P.Hs = p->Hs;
    P.Ws = p->Ws;
    P.Wh = p->Ws / 2 + 1;
    P.in_domain = p->in_domain;
    P.activation = p->activation;
    P.vdt = p->value_dtype;
    P.has_bias = p->has_bias;
    P.beta = p->beta;
    if (p->in_domain == SD_DOMAIN_SPATIAL) {
        if ((st = check_range(op, "H", p->H, 1, kMaxSpatialH, "(spatial input height; limit of this implementation)")) != SD_OK) return st;
        if ((st = check_range(op, "W", p->W, 1, kI32Max)) != SD_OK) return st;
        if ((int64_t)p->Hs != (int64_t)p->H + p->k - 1)
            return fail(SD_ERR_INVALID_ARGUMENT, "%s: attribute 'Hs' = %d is invalid: must equal H + k - 1 = %lld for a spatial input",
                        op, p->Hs, (long long)p->H + p->k - 1);
        if ((int64_t)p->Ws != (int64_t)p->W + p->k - 1)
            return fail(SD_ERR_INVALID_ARGUMENT, "%s: attribute 'Ws' = %d is invalid: must equal W + k - 1 = %lld for a spatial input",
                        op, p->Ws, (long long)p->W + p->k - 1);
        if ((st = check_float_type(op, "x_type", p->x_type)) != SD_OK) return st;
        if (p->input_spectrum != SD_SPECTRUM_AUTO && p->input_spectrum != SD_SPECTRUM_DENSE &&
            p->input_spectrum != SD_SPECTRUM_STREAMED)
            return fail(SD_ERR_INVALID_ARGUMENT,
                        "%s: 'input_spectrum' = %d must be 0 (auto), 1 (dense) or 2 (streamed)", op, p->input_spectrum);
        P.H = p->H;
        P.W = p->W;
        P.x_type = p->x_type;
        P.stream_in = p->input_spectrum == SD_SPECTRUM_STREAMED ||
                      (p->input_spectrum == SD_SPECTRUM_AUTO &&
                       conv_streams_input(p->O, p->H, p->W, p->k, p->C, p->activation == SD_ACT_RELU));
    } else {
        if (p->k > p->Hs || p->k > p->Ws)
            return fail(SD_ERR_INVALID_ARGUMENT, "%s: attribute 'k' = %d is invalid: must be <= Hs = %d and <= Ws = %d for a spectral input",
                        op, p->k, p->Hs, p->Ws);
        if ((st = packed_input(op, "in_row_words", p->C, P.F, p->value_dtype, p->in_row_words, &P.in)) != SD_OK) return st;
    }
    P.pool = p->pool;
    P.hyb = p->activation == SD_ACT_RELU;
    P.oHs = P.pool != SD_POOL_NONE ? (P.Hs + 1) / 2 : P.Hs;
    P.oWs = P.pool != SD_POOL_NONE ? (P.Ws + 1) / 2 : P.Ws;
    P.oWh = P.oWs / 2 + 1;
    P.oF = P.oHs * P.oWh;
    if (P.hyb && ((int64_t)P.Hs * P.Ws > kI32Max || 2LL * P.F > kHybMaxCols))
        return fail(SD_ERR_INVALID_ARGUMENT,
                    "%s: Hs * Ws = %lld, F = %d too large: activation \"relu\" needs Hs * Ws <= 2^31 - 1 (spatial maps) "
                    "and 2 * F <= 2^31 - 65 (GEMM columns)", op, (long long)P.Hs * P.Ws, P.F);
    if ((st = check_range(op, "capacity", p->capacity, 1, (int64_t)p->O * P.oF,
                          P.pool != SD_POOL_NONE ? "(1 .. O * ceil(Hs/2) * (ceil(Ws/2) // 2 + 1), the pooled output)"
                                                 : "(1 .. O * Hs * (Ws // 2 + 1))")) != SD_OK)
        return st;
    P.out = sd_make_layout(p->O, P.oF, p->capacity, p->value_dtype);
    P.bias_scale = (float)sqrt((double)P.Hs * (double)P.Ws);
    P.fft_scale = (float)(1.0 / sqrt((double)P.Hs * (double)P.Ws));
    P.out_scale = (float)(1.0 / sqrt((double)P.oHs * (double)P.oWs));
    P.centre = P.hyb && P.in_domain == SD_DOMAIN_SPECTRAL ? P.k / 2 : 0;
    /* the CUDA GEMM: hi/lo fp16 pairs on tensor cores for fp16 packed inputs (bounded by fp16); a spatial
     * input's spectrum is not (an unnormalised large image's DC passes 65504) and its K = C is small:
     * fp32 SIMT there, the host's bits */
    P.gemm_split = P.vdt == SD_VALUE_FP16 && P.in_domain == SD_DOMAIN_SPECTRAL;
    const double dense = P.in_domain == SD_DOMAIN_SPATIAL && !P.stream_in ? (double)batch * P.C * P.F * 8.0 : 0.0;
    double hyb = 0.0;
    if (P.hyb) {
        hyb_chunk(batch, P.C, P.O, P.Hs, P.Ws, P.F, &P.hyb_sb, &P.hyb_ot);
        hyb = hyb_chunk_bytes(P.F, P.hyb_sb, P.hyb_ot);
    }
    if ((st = bytes_ok(op, dense + hyb + (double)batch * SD_HIST_WORDS * 4.0)) != SD_OK) return st;
    WsBuilder wb;
    plan_pipe_ws(wb, batch, &P.pipe);
    plan_twiddle_ws(wb, P.Hs, P.Ws, &P.tw_h, &P.tw_w);
    if (P.in_domain == SD_DOMAIN_SPATIAL && !P.stream_in) P.X = wb.take(sizeof(sd_cf) * (size_t)batch * P.C * P.F);
    if (P.hyb && P.pool != SD_POOL_NONE) plan_twiddle_ws(wb, P.oHs, P.oWs, &P.tw_h2, &P.tw_w2);
    if (P.hyb && batch > 0) {
        const size_t planes = (size_t)P.hyb_sb * P.hyb_ot;
        P.hyb_stage_ws = P.F > kHybSmemMaxF ? 1 : 0;
        P.h_y = wb.take(sizeof(sd_cf) * planes * P.F);
        if (P.hyb_stage_ws) P.h_a = wb.take(sizeof(sd_cf) * planes * P.F);
    }
    P.ws_bytes = wb.total();
    *out = P;
    return SD_OK;
}

sd_status plan_pool(const sd_spec_pool_params* p, int32_t batch, PoolPlan* out) {
    const char* op = "SpecPool";
    sd_status st;
    if (!p) return fail(SD_ERR_INVALID_ARGUMENT, "%s: params is NULL", op);
    if ((st = check_batch(op, batch)) != SD_OK) return st;
    PoolPlan P;
    P.B = batch;
    if ((st = check_range(op, "C", p->C, 1, kI32Max)) != SD_OK) return st;
    if ((st = spectral_size(op, p->Hs, p->Ws, &P.F)) != SD_OK) return st;
    if ((st = check_range(op, "out_Hs", p->out_Hs, 1, p->Hs, "(1 .. Hs)")) != SD_OK) return st;
    if ((st = check_range(op, "out_Ws", p->out_Ws, 1, p->Ws, "(1 .. Ws)")) != SD_OK) return st;
    if ((st = check_value_dtype(op, p->value_dtype)) != SD_OK) return st;
    P.C = p->C;
    P.Hs = p->Hs;
    P.Ws = p->Ws;
    P.Wh = p->Ws / 2 + 1;
    P.oHs = p->out_Hs;
    P.oWs = p->out_Ws;
    P.oWh = p->out_Ws / 2 + 1;
    P.oF = P.oHs * P.oWh;
    P.vdt = p->value_dtype;
    if ((st = packed_input(op, "in_row_words", p->C, P.F, p->value_dtype, p->in_row_words, &P.in)) != SD_OK) return st;
    if ((st = check_range(op, "capacity", p->capacity, 1, (int64_t)p->C * P.oF, "(1 .. C * out_Hs * (out_Ws // 2 + 1))")) != SD_OK)
        return st;
    P.out = sd_make_layout(p->C, P.oF, p->capacity, p->value_dtype);
    P.scale = (float)sqrt(((double)P.oHs * (double)P.oWs) / ((double)P.Hs * (double)P.Ws));
    WsBuilder wb;
    plan_pipe_ws(wb, batch, &P.pipe);
    P.ws_bytes = wb.total();
    *out = P;
    return SD_OK;
}

sd_status plan_to_spatial(const sd_spec_to_spatial_params* p, int32_t batch, ToSpatialPlan* out) {
    const char* op = "SpecToSpatial";
    sd_status st;
    if (!p) return fail(SD_ERR_INVALID_ARGUMENT, "%s: params is NULL", op);
    if ((st = check_batch(op, batch)) != SD_OK) return st;
    ToSpatialPlan P;
    P.B = batch;
    if ((st = check_range(op, "C", p->C, 1, kI32Max)) != SD_OK) return st;
    if ((st = spectral_size(op, p->Hs, p->Ws, &P.F)) != SD_OK) return st;
    if ((st = check_range(op, "Ws", p->Ws, 1, kMaxToSpatialWs, "(limit of this implementation)")) != SD_OK) return st;
    if ((st = check_value_dtype(op, p->value_dtype)) != SD_OK) return st;
    if ((st = check_float_type(op, "y_type", p->y_type)) != SD_OK) return st;
    P.C = p->C;
    P.Hs = p->Hs;
    P.Ws = p->Ws;
    P.Wh = p->Ws / 2 + 1;
    P.vdt = p->value_dtype;
    P.y_type = p->y_type;
    if ((st = packed_input(op, "in_row_words", p->C, P.F, p->value_dtype, p->in_row_words, &P.in)) != SD_OK) return st;
    P.scale = (float)(1.0 / sqrt((double)P.Hs * (double)P.Ws));
    WsBuilder wb;
    plan_twiddle_ws(wb, P.Hs, P.Ws, &P.tw_h, &P.tw_w);
    P.ws_bytes = wb.total();
    *out = P;
    return SD_OK;
}

sd_status plan_concat(const sd_spec_concat_params* p, int32_t batch, ConcatPlan* out) {
    const char* op = "SpecConcat";
    sd_status st;
    if (!p) return fail(SD_ERR_INVALID_ARGUMENT, "%s: params is NULL", op);
    if ((st = check_batch(op, batch)) != SD_OK) return st;
    ConcatPlan P;
    P.B = batch;
    if ((st = check_range(op, "n_inputs", p->n_inputs, 1, SD_MAX_CONCAT_INPUTS, "(number of inputs = len(C))")) != SD_OK)
        return st;
    if ((st = spectral_size(op, p->Hs, p->Ws, &P.F)) != SD_OK) return st;
    if ((st = check_value_dtype(op, p->value_dtype)) != SD_OK) return st;
    P.n = p->n_inputs;
    P.Hs = p->Hs;
    P.Ws = p->Ws;
    P.vdt = p->value_dtype;
    int64_t ctot = 0;
    char name[64];
    for (int32_t i = 0; i < P.n; ++i) {
        snprintf(name, sizeof(name), "C[%d]", i);
        if ((st = check_range(op, name, p->C[i], 1, kI32Max)) != SD_OK) return st;
        snprintf(name, sizeof(name), "in_row_words[%d]", i);
        if ((st = packed_input(op, name, p->C[i], P.F, p->value_dtype, p->in_row_words[i], &P.in[i])) != SD_OK) return st;
        P.C[i] = p->C[i];
        P.c_start[i] = (int32_t)ctot;
        ctot += p->C[i];
        if (ctot > kI32Max) return fail(SD_ERR_INVALID_ARGUMENT, "%s: attribute 'C': sum(C) exceeds 2^31 - 1", op);
    }
    P.c_start[P.n] = (int32_t)ctot;
    P.Cout = (int32_t)ctot;
    if ((st = check_range(op, "capacity", p->capacity, 1, ctot * P.F, "(1 .. sum(C) * Hs * (Ws // 2 + 1))")) != SD_OK)
        return st;
    P.out = sd_make_layout(P.Cout, P.F, p->capacity, p->value_dtype);
    WsBuilder wb;
    plan_pipe_ws(wb, batch, &P.pipe);
    P.ws_bytes = wb.total();
    *out = P;
    return SD_OK;
}

}  // namespace sd

/* ---------------------------------------------------------------------------------------------- */
/* C ABI: identity, errors, sizes, validation                                                       */

extern "C" {

SD_API int32_t sd_abi_version(void) { return SD_ABI_VERSION; }

SD_API const char* sd_last_error(void) { return sd::last_error(); }

SD_API int64_t sd_packed_row_words(int32_t C, int32_t F, int32_t capacity, int32_t value_dtype) {
    if (C < 1 || F < 1 || capacity < 1 || (int64_t)capacity > (int64_t)C * F) return 0;
    if (value_dtype != SD_VALUE_FP32 && value_dtype != SD_VALUE_FP16) return 0;
    return sd_row_words(C, F, capacity, value_dtype);
}

SD_API sd_status sd_spec_conv_validate(const sd_spec_conv_params* p) {
    sd::clear_error();
    sd::ConvPlan P;
    return sd::plan_conv(p, 0, &P);
}
SD_API sd_status sd_spec_pool_validate(const sd_spec_pool_params* p) {
    sd::clear_error();
    sd::PoolPlan P;
    return sd::plan_pool(p, 0, &P);
}
SD_API sd_status sd_spec_to_spatial_validate(const sd_spec_to_spatial_params* p) {
    sd::clear_error();
    sd::ToSpatialPlan P;
    return sd::plan_to_spatial(p, 0, &P);
}
SD_API sd_status sd_spec_concat_validate(const sd_spec_concat_params* p) {
    sd::clear_error();
    sd::ConcatPlan P;
    return sd::plan_concat(p, 0, &P);
}

SD_API int64_t sd_spec_conv_out_row_words(const sd_spec_conv_params* p) {
    sd::clear_error();
    sd::ConvPlan P;
    return sd::plan_conv(p, 0, &P) == SD_OK ? P.out.S : 0;
}
SD_API int64_t sd_spec_pool_out_row_words(const sd_spec_pool_params* p) {
    sd::clear_error();
    sd::PoolPlan P;
    return sd::plan_pool(p, 0, &P) == SD_OK ? P.out.S : 0;
}
SD_API int64_t sd_spec_concat_out_row_words(const sd_spec_concat_params* p) {
    sd::clear_error();
    sd::ConcatPlan P;
    return sd::plan_concat(p, 0, &P) == SD_OK ? P.out.S : 0;
}

#define SD_WS_FN(NAME, PARAMS, PLAN, FN)                                              \
    SD_API sd_status NAME(const PARAMS* p, int32_t batch, size_t* bytes) {            \
        sd::clear_error();                                                            \
        if (!bytes) return sd::fail(SD_ERR_INVALID_ARGUMENT, #NAME ": bytes is NULL"); \
        PLAN P;                                                                       \
        const sd_status st = FN(p, batch, &P);                                        \
        *bytes = st == SD_OK ? P.ws_bytes : 0;                                        \
        return st;                                                                    \
    }

SD_WS_FN(sd_spec_conv_workspace_size, sd_spec_conv_params, sd::ConvPlan, sd::plan_conv)
SD_WS_FN(sd_spec_pool_workspace_size, sd_spec_pool_params, sd::PoolPlan, sd::plan_pool)
SD_WS_FN(sd_spec_to_spatial_workspace_size, sd_spec_to_spatial_params, sd::ToSpatialPlan, sd::plan_to_spatial)
SD_WS_FN(sd_spec_concat_workspace_size, sd_spec_concat_params, sd::ConcatPlan, sd::plan_concat)

}  // extern "C"
