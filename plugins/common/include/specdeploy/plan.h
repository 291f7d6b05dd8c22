/*
 * Launcher logic shared by the host and the CUDA library (host C++ only): attribute validation,
 * derived sizes, workspace layout. Both libraries compile common/src/plan.cpp, so CI exercises
 * exactly the checks and the workspace arithmetic that the CUDA launchers run.
 */
#ifndef SPECDEPLOY_PLAN_H
#define SPECDEPLOY_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "specdeploy/packed.h"
#include "specdeploy/pipeline.h"
#include "specdeploy/specdeploy_c.h"

namespace sd {

/* Limits of this implementation (shared memory tiles of the CUDA kernels); documented in the READMEs. */
constexpr int32_t kMaxSpatialH = 4096;    /* SpecConv, spatial input: H (column DFT stages H rows) */
constexpr int32_t kMaxToSpatialWs = 8192; /* SpecToSpatial: Ws (row pass stages Ws/2+1 columns) */
constexpr size_t kWsAlign = 256;          /* sub-buffers of the workspace are aligned to this */

/* The hybrid SpecConv (activation RELU, DESIGN §2b) works on chunks of hyb_sb samples x hyb_ot output
 * channels; its dense buffers (workspace: one complex plane of F per sample and channel of the
 * chunk, two for F > kHybSmemMaxF) are sized by the chunk, never by the whole output (§5). The chunk is the one with the fewest
 * chunks per call among sb = 1, 2, 4, .. (<= B) x ot = 8, 16, 32, .. (<= O) whose buffers fit
 * 1/kHybBudgetDiv of the layer's dense fp16 activations at this batch, B * (C + O) * Hs * Ws * 2 bytes,
 * else 1 x min(O, 8): the workspace must stay well below the activations the block replaces, or it
 * becomes the model's peak (measured on an H200 with fixed 4 x 16 chunks: 0.4-2.7 MB, 1.6-30x the
 * twins' activations), and on the GPU each chunk costs a fixed few kernel launches per pass (the H200
 * times grew with the launch count, ~5-7 us per launch). The GEMM reads its input in place, so no
 * input tile is declared; the host library keeps its GEMM operands in its own heap scratch.
 * specdeploy's planner ports these rules (the declared workspace). */
constexpr int32_t kHybBudgetDiv = 8;  /* chunk buffers <= layer activations / 8 where possible */
constexpr int32_t kHybMaxChannels = 65535 * 64; /* chunk channels: 64-row GEMM tiles in a grid's y */
/* auto input spectrum of a spatial-input hybrid SpecConv: streamed only for C <= this (the CUDA GEMM's
 * smallest K step: the input is then read once for all k*k taps) and where the paper block would */
constexpr int32_t kHybStreamMaxC = 16;
/* the spatial step's stage plane (F complex per (sample, channel)) lives in the CUDA block's shared
 * memory when F <= this (F * 8 bytes <= 48 KiB, the default dynamic limit): then the workspace holds
 * one plane per sample and channel of the chunk, else two */
constexpr int32_t kHybSmemMaxF = 6144;

/* Workspace shared by the ops with a packed output (the count/decide/scan/write pipeline). */
struct PipeWs {
    size_t hist = 0, thr = 0, own = 0, flag = 0, oct = 0, nf = 0; /* byte offsets from the aligned base */
};

struct ConvPlan {
    int32_t B = 0, C = 0, O = 0, H = 0, W = 0, Hs = 0, Ws = 0, Wh = 0, F = 0, k = 0;
    int32_t in_domain = 0, activation = 0, vdt = 0, x_type = 0, has_bias = 0;
    /* output spectral size: Hs x Ws, or ceil(Hs/2) x ceil(Ws/2) with a pool */
    int32_t pool = 0, oHs = 0, oWs = 0, oWh = 0, oF = 0;
    /* hybrid (activation RELU): chunk of hyb_sb samples x hyb_ot channels; GEMM operands are fp32
     * (4 bytes per element); gemm_split: the CUDA GEMM runs them on tensor cores as hi + lo fp16 pairs
     * (value_dtype fp16), else SIMT fp32; kernel centre (k//2 for a spectral input, 0 for a spatial one) */
    int32_t hyb = 0, hyb_sb = 0, hyb_ot = 0, gemm_split = 0, centre = 0;
    float out_scale = 0.0f; /* 1/sqrt(oHs*oWs) */
    int32_t stream_in = 0; /* spatial input: 1 = spectrum recomputed per tile (no X buffer), 0 = dense X */
    float beta = 0.0f;
    float bias_scale = 0.0f; /* sqrt(Hs*Ws) */
    float fft_scale = 0.0f;  /* 1/sqrt(Hs*Ws) */
    sd_layout in{}, out{};   /* in: spectral input only */
    PipeWs pipe;
    size_t tw_h = 0, tw_w = 0, X = 0; /* twiddle tables (Hs, Ws entries), spatial spectrum B*C*F */
    size_t tw_h2 = 0, tw_w2 = 0;      /* hybrid: twiddles of the output size (oHs, oWs entries) */
    /* hybrid chunk buffers, [hyb_sb][hyb_ot][F] complex each: the spectrum Y (then the spatial map, then
     * Z, the chunk's output spectrum that the pipeline packs, in the first oF values of each plane), and
     * only for F > kHybSmemMaxF (hyb_stage_ws) the stage buffer (inverse column stage, then the forward
     * row stage; else in shared memory on the GPU, heap scratch on the host) */
    int32_t hyb_stage_ws = 0;
    size_t h_y = 0, h_a = 0;
    size_t ws_bytes = 0;              /* total, including kWsAlign slack */
};

struct PoolPlan {
    int32_t B = 0, C = 0, Hs = 0, Ws = 0, Wh = 0, oHs = 0, oWs = 0, oWh = 0, F = 0, oF = 0, vdt = 0;
    float scale = 0.0f; /* sqrt(oHs*oWs/(Hs*Ws)) */
    sd_layout in{}, out{};
    PipeWs pipe;
    size_t ws_bytes = 0;
};

struct ToSpatialPlan {
    int32_t B = 0, C = 0, Hs = 0, Ws = 0, Wh = 0, F = 0, vdt = 0, y_type = 0;
    float scale = 0.0f; /* 1/sqrt(Hs*Ws) */
    sd_layout in{};
    size_t tw_h = 0, tw_w = 0;
    size_t ws_bytes = 0;
};

struct ConcatPlan {
    int32_t B = 0, n = 0, Cout = 0, Hs = 0, Ws = 0, F = 0, vdt = 0;
    int32_t C[SD_MAX_CONCAT_INPUTS] = {};
    int32_t c_start[SD_MAX_CONCAT_INPUTS + 1] = {};
    sd_layout in[SD_MAX_CONCAT_INPUTS]{}, out{};
    PipeWs pipe;
    size_t ws_bytes = 0;
};

/* SD_SPECTRUM_AUTO's rule for a spatial input: stream when recomputing the input spectrum per output
 * tile of 8 channels, ceil(O/8) * (H*W + H) multiply-adds per coefficient and input channel, costs at
 * most 8x the op's own work there, O * (k*k + k + 1) (kernel spectrum on the fly + product); the hybrid
 * block (activation RELU) also needs C <= kHybStreamMaxC, where its GEMM recomputes a streamed
 * coefficient once for all taps instead of once per tap (spec_conv.cu). specdeploy.ops.spec_conv
 * ports it (streams_input: the planner's declared workspace). */
bool conv_streams_input(int32_t O, int32_t H, int32_t W, int32_t k, int32_t C, bool hybrid);

/* Validate and derive; batch < 0 is an error, batch 0 gives a plan without per-sample buffers (the
 * workspace size then covers only the per-call parts: twiddle tables and alignment slack). */
sd_status plan_conv(const sd_spec_conv_params* p, int32_t batch, ConvPlan* out);
sd_status plan_pool(const sd_spec_pool_params* p, int32_t batch, PoolPlan* out);
sd_status plan_to_spatial(const sd_spec_to_spatial_params* p, int32_t batch, ToSpatialPlan* out);
sd_status plan_concat(const sd_spec_concat_params* p, int32_t batch, ConcatPlan* out);

/* Common checks of a forward call: workspace size, required pointers. `what` is the op name. */
sd_status check_workspace(const char* what, const void* workspace, size_t have, size_t need);
sd_status check_ptr(const char* what, const char* name, const void* ptr);

/* The workspace base aligned up to kWsAlign. */
inline unsigned char* ws_base(void* workspace) {
    const uintptr_t a = ((uintptr_t)workspace + kWsAlign - 1) & ~(uintptr_t)(kWsAlign - 1);
    return (unsigned char*)a;
}

/* The pipeline arguments of an op with a packed output, its workspace carved from `base`. */
inline sd_pipe make_pipe(const PipeWs& ws, unsigned char* base, int32_t B, const sd_layout& out, int32_t* y,
                         int32_t beta_gate, float beta) {
    sd_pipe a;
    a.B = B;
    a.Cout = out.C;
    a.F = out.F;
    a.NB = out.NB;
    a.cap = out.cap;
    a.vdt = out.vdt;
    a.beta_gate = beta_gate;
    a.beta = beta;
    a.base = sd_grid_base(beta);
    a.beta_used0 = beta;
    a.L = out;
    a.y = y;
    a.hist = (uint32_t*)(base + ws.hist);
    a.thr = (float*)(base + ws.thr);
    a.own = (uint32_t*)(base + ws.own);
    a.flag = (uint32_t*)(base + ws.flag);
    a.oct = (int32_t*)(base + ws.oct);
    a.nf = (uint32_t*)(base + ws.nf);
    return a;
}

}  // namespace sd

#endif /* SPECDEPLOY_PLAN_H */
