/*
 * specdeploy C ABI: the one interface between the op set's kernels and everything that calls them
 * (the Python `cuda` backend through ctypes, the host library used by CI, the TensorRT plugins).
 *
 * Rules: plain C types only, no exceptions cross it, every function returns an sd_status and can
 * explain a failure with sd_last_error() (thread-local message naming the attribute or buffer).
 * The header compiles without CUDA headers: streams are passed as void* (a cudaStream_t).
 * Attributes are those of ../../../../docs/ops.md; the packed layout is docs/format.md.
 *
 * Two libraries implement it with the same symbols: libspecdeploy_kernels.so (CUDA; pointers are
 * device pointers, work is enqueued on `stream`, nothing synchronizes, no allocation) and
 * libspecdeploy_host.so (CPU; pointers are host pointers, `stream` is ignored, the call is
 * synchronous). Both run the same validation and workspace arithmetic (plugins/common/src/plan.cpp).
 *
 * Conventions:
 * - Messages: sd_last_error() names the op, the attribute and the allowed range ("SpecConv: attribute
 *   'beta' = -1 is invalid: must be a finite number >= 0"); a caller that knows the node name
 *   prefixes it. Every entry point that can fail clears the message first.
 * - Workspace: any alignment is accepted (the size includes slack to align sub-buffers to 256 bytes);
 *   it needs no initialization and its content is garbage afterwards. Query the size with the same
 *   params and batch as the forward call; a larger workspace is fine.
 * - Outputs never alias inputs. Every output word is written (unused value slots are 0).
 * - batch = 0 is valid and does nothing; batch < 0 is SD_ERR_INVALID_ARGUMENT.
 * - Spectral-input tensors are validated by size only (in_row_words); a row whose offsets point past
 *   its capacity reads as zeros, never out of bounds.
 */
#ifndef SPECDEPLOY_C_H
#define SPECDEPLOY_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SD_API __declspec(dllexport)
#else
#define SD_API __attribute__((visibility("default")))
#endif

/* 3: sd_spec_conv_params gained `pool` (after `activation`), SD_ACT_RELU (DESIGN §2b hybrid block);
 * packed header word 3 carries flags (bit 0: non-finite input); two-level level histogram in the
 * packed-output workspaces. */
#define SD_ABI_VERSION 3

typedef enum sd_status {
    SD_OK = 0,
    SD_ERR_INVALID_ARGUMENT = 1, /* an attribute or size is out of range; see sd_last_error() */
    SD_ERR_WORKSPACE = 2,        /* workspace smaller than the op's *_workspace_size */
    SD_ERR_CUDA = 3,             /* a CUDA/cuFFT call failed */
    SD_ERR_UNSUPPORTED = 4,      /* valid by the contract but not implemented by this build */
    SD_ERR_INTERNAL = 5
} sd_status;

typedef enum sd_value_dtype { SD_VALUE_FP32 = 0, SD_VALUE_FP16 = 1 } sd_value_dtype;
typedef enum sd_domain { SD_DOMAIN_SPATIAL = 0, SD_DOMAIN_SPECTRAL = 1 } sd_domain;
/* SpecConv activation: NONE/TANH act on the thresholded spectrum (paper block, DESIGN §2); RELU is the
 * hybrid block (DESIGN §2b): inverse rfft2, ReLU, optional 2x2 pool, forward rfft2, threshold. */
typedef enum sd_activation { SD_ACT_NONE = 0, SD_ACT_TANH = 1, SD_ACT_RELU = 2 } sd_activation;
/* SpecConv pool of the hybrid block (activation RELU only): 2x2 windows, stride 2, ceil mode, over
 * the pixels that exist; output Hs' = ceil(Hs/2), Ws' = ceil(Ws/2). */
typedef enum sd_pool { SD_POOL_NONE = 0, SD_POOL_MAX2 = 1, SD_POOL_AVG2 = 2 } sd_pool;
/* element type of a spatial (non-packed) tensor */
typedef enum sd_float_type { SD_FLOAT32 = 0, SD_FLOAT16 = 1 } sd_float_type;

#define SD_MAX_CONCAT_INPUTS 64

/* How SpecConv gets the spectrum of a spatial input (first layer). DENSE: a separable direct DFT into
 * the workspace, B*C*F complex64 (the one dense spectral buffer DESIGN §5 allows). STREAMED: each
 * coefficient recomputed from the input where a tile needs it: no buffer, more arithmetic. AUTO picks
 * STREAMED when that costs at most 8x the op's own per-tile work (the rule in plugins/spec_conv/
 * README.md, "Input spectrum"). Both give the same bits: the same operations in the same order. */
typedef enum sd_input_spectrum {
    SD_SPECTRUM_AUTO = 0,
    SD_SPECTRUM_DENSE = 1,
    SD_SPECTRUM_STREAMED = 2
} sd_input_spectrum;

/* SpecConv. Spatial input: x is [B, C, H, W] of x_type, Hs = H + k - 1, Ws = W + k - 1.
 * Spectral input: x is int32 [B, in_row_words], a packed map with C channels of Hs x Ws (H, W, x_type
 * are ignored); its capacity follows from in_row_words. Limit of this implementation: H <= 4096.
 * Output: packed, O channels of Hs x Ws, or of ceil(Hs/2) x ceil(Ws/2) when pool != NONE; capacity
 * counts coefficients of the output size. RELU with a spectral input uses the centred kernel of
 * DESIGN §2b (circular "same" convolution); a spatial input keeps the zero-padded full convolution. */
typedef struct sd_spec_conv_params {
    int32_t in_domain;     /* sd_domain */
    int32_t C, O;          /* input / output channels */
    int32_t H, W;          /* spatial input size (spatial in_domain only; else 0) */
    int32_t Hs, Ws;        /* spectral size of input (spectral) and output */
    int32_t k;             /* kernel size */
    float beta;            /* finite, >= 0 */
    int32_t activation;    /* sd_activation */
    int32_t pool;          /* sd_pool; NONE unless activation = RELU */
    int32_t capacity;      /* output capacity, 1 .. O*F_out (F_out of the pooled size when pool != NONE) */
    int32_t value_dtype;   /* sd_value_dtype of packed input and output */
    int32_t x_type;        /* sd_float_type of a spatial input */
    int32_t has_bias;      /* 0/1 */
    int32_t input_spectrum; /* spatial input only: sd_input_spectrum (0 = auto) */
    int64_t in_row_words;  /* spectral input only: S of the input rows */
} sd_spec_conv_params;

typedef struct sd_spec_pool_params {
    int32_t C, Hs, Ws, out_Hs, out_Ws;
    int32_t capacity;      /* output capacity */
    int32_t value_dtype;
    int64_t in_row_words;
} sd_spec_pool_params;

/* SpecToSpatial. Limit of this implementation: Ws <= 8192. */
typedef struct sd_spec_to_spatial_params {
    int32_t C, Hs, Ws;
    int32_t value_dtype;
    int32_t y_type;        /* sd_float_type of the spatial output */
    int64_t in_row_words;
} sd_spec_to_spatial_params;

typedef struct sd_spec_concat_params {
    int32_t n_inputs;                        /* 1 .. SD_MAX_CONCAT_INPUTS */
    int32_t C[SD_MAX_CONCAT_INPUTS];         /* channels of each input */
    int64_t in_row_words[SD_MAX_CONCAT_INPUTS];
    int32_t Hs, Ws;
    int32_t capacity;
    int32_t value_dtype;
} sd_spec_concat_params;

/* Library identity and errors. */
SD_API int32_t sd_abi_version(void);
/* "cuda" for the GPU library, "host" for the CPU build used by CI; architectures it was built for. */
SD_API const char* sd_build_info(void);
/* Message of the last failure on this thread ("" if none). */
SD_API const char* sd_last_error(void);
/* cuda library: SD_OK if the current CUDA device can run the kernels; else SD_ERR_CUDA with the CUDA
 * error text (e.g. no kernel image for this architecture, driver too old) and the architectures the
 * library was built for. host library: always SD_OK. (Added by the kernel engineer.) */
SD_API sd_status sd_check_device(void);
/* Bindings' self-check: sizeof/offsetof of the params structs and the constants above, by their C
 * spelling ("sizeof(sd_spec_conv_params)", "offsetof(sd_spec_conv_params, beta)", "SD_NLEV"); -1 for
 * an unknown name. specdeploy/native/abi.py compares every ctypes mirror with it at load. */
SD_API int64_t sd_abi_query(const char* name);

/* Packed rows: words per row for C channels of F coefficients; 0 if the arguments are invalid
 * (C < 1, F < 1, capacity outside 1 .. C*F, value_dtype not 0/1). */
SD_API int64_t sd_packed_row_words(int32_t C, int32_t F, int32_t capacity, int32_t value_dtype);

/* Validation (no device work): SD_OK, or SD_ERR_INVALID_ARGUMENT with sd_last_error() naming the
 * attribute and its allowed range. Every forward function validates too. */
SD_API sd_status sd_spec_conv_validate(const sd_spec_conv_params* p);
SD_API sd_status sd_spec_pool_validate(const sd_spec_pool_params* p);
SD_API sd_status sd_spec_to_spatial_validate(const sd_spec_to_spatial_params* p);
SD_API sd_status sd_spec_concat_validate(const sd_spec_concat_params* p);

/* Output row words (packed outputs) for valid params; 0 if invalid. */
SD_API int64_t sd_spec_conv_out_row_words(const sd_spec_conv_params* p);
SD_API int64_t sd_spec_pool_out_row_words(const sd_spec_pool_params* p);
SD_API int64_t sd_spec_concat_out_row_words(const sd_spec_concat_params* p);

/* Workspace bytes the forward call needs for `batch` samples (validates like *_validate; *bytes = 0
 * on failure). SpecConv with a spatial input includes the dense input spectrum, batch*C*F complex
 * fp32 (DESIGN §5: the only dense spectral buffer); otherwise a few KiB per sample. */
SD_API sd_status sd_spec_conv_workspace_size(const sd_spec_conv_params* p, int32_t batch, size_t* bytes);
SD_API sd_status sd_spec_pool_workspace_size(const sd_spec_pool_params* p, int32_t batch, size_t* bytes);
SD_API sd_status sd_spec_to_spatial_workspace_size(const sd_spec_to_spatial_params* p, int32_t batch, size_t* bytes);
SD_API sd_status sd_spec_concat_workspace_size(const sd_spec_concat_params* p, int32_t batch, size_t* bytes);

/* Forward passes. All pointers are device pointers in the cuda library and host pointers in the
 * host library; `stream` is a cudaStream_t (ignored by the host library). Weights w: float32
 * [O, C, k, k]; bias b: float32 [O] or NULL when has_bias = 0. Packed tensors: int32 [batch, S]. */
SD_API sd_status sd_spec_conv_forward(const sd_spec_conv_params* p, int32_t batch, const void* x,
                                      const float* w, const float* b, int32_t* y, void* workspace,
                                      size_t workspace_bytes, void* stream);
SD_API sd_status sd_spec_pool_forward(const sd_spec_pool_params* p, int32_t batch, const int32_t* x,
                                      int32_t* y, void* workspace, size_t workspace_bytes, void* stream);
SD_API sd_status sd_spec_to_spatial_forward(const sd_spec_to_spatial_params* p, int32_t batch,
                                            const int32_t* x, void* y, void* workspace,
                                            size_t workspace_bytes, void* stream);
/* SpecConcat: `xs` is a HOST array of p->n_inputs pointers (device pointers in the cuda library),
 * input i being int32 [batch, p->in_row_words[i]]; the array itself is read during the call only. */
SD_API sd_status sd_spec_concat_forward(const sd_spec_concat_params* p, int32_t batch,
                                        const int32_t* const* xs, int32_t* y, void* workspace,
                                        size_t workspace_bytes, void* stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SPECDEPLOY_C_H */
