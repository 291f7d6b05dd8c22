/* sd_abi_query: the sizes, field offsets and constants a binding mirrors, by name (specdeploy_c.h).
 *
 * Why: the Python bindings (specdeploy/native/abi.py) mirror the params structs with ctypes and copy
 * a few constants; at load they ask the library for each of them and refuse a mismatch, so a field
 * added or moved on one side cannot silently shift every later field. Names are the C spelling:
 * "sizeof(sd_spec_conv_params)", "offsetof(sd_spec_conv_params, beta)", "SD_MAX_CONCAT_INPUTS".
 * Returns -1 for an unknown name (no error state is set). */
#include <stddef.h>
#include <string.h>

#include "specdeploy/plan.h"
#include "specdeploy/specdeploy_c.h"
#include "specdeploy/threshold.h"

namespace {

struct Entry {
    const char* name;
    int64_t value;
};

#define SD_SIZE(T) {"sizeof(" #T ")", (int64_t)sizeof(T)}
#define SD_OFF(T, f) {"offsetof(" #T ", " #f ")", (int64_t)offsetof(T, f)}
#define SD_CONST(c) {#c, (int64_t)(c)}

const Entry kEntries[] = {
    SD_SIZE(sd_spec_conv_params),
    SD_OFF(sd_spec_conv_params, in_domain), SD_OFF(sd_spec_conv_params, C), SD_OFF(sd_spec_conv_params, O),
    SD_OFF(sd_spec_conv_params, H), SD_OFF(sd_spec_conv_params, W), SD_OFF(sd_spec_conv_params, Hs),
    SD_OFF(sd_spec_conv_params, Ws), SD_OFF(sd_spec_conv_params, k), SD_OFF(sd_spec_conv_params, beta),
    SD_OFF(sd_spec_conv_params, activation), SD_OFF(sd_spec_conv_params, pool), SD_OFF(sd_spec_conv_params, capacity),
    SD_OFF(sd_spec_conv_params, value_dtype), SD_OFF(sd_spec_conv_params, x_type),
    SD_OFF(sd_spec_conv_params, has_bias), SD_OFF(sd_spec_conv_params, input_spectrum),
    SD_OFF(sd_spec_conv_params, in_row_words),
    SD_SIZE(sd_spec_pool_params),
    SD_OFF(sd_spec_pool_params, C), SD_OFF(sd_spec_pool_params, Hs), SD_OFF(sd_spec_pool_params, Ws),
    SD_OFF(sd_spec_pool_params, out_Hs), SD_OFF(sd_spec_pool_params, out_Ws), SD_OFF(sd_spec_pool_params, capacity),
    SD_OFF(sd_spec_pool_params, value_dtype), SD_OFF(sd_spec_pool_params, in_row_words),
    SD_SIZE(sd_spec_to_spatial_params),
    SD_OFF(sd_spec_to_spatial_params, C), SD_OFF(sd_spec_to_spatial_params, Hs),
    SD_OFF(sd_spec_to_spatial_params, Ws), SD_OFF(sd_spec_to_spatial_params, value_dtype),
    SD_OFF(sd_spec_to_spatial_params, y_type), SD_OFF(sd_spec_to_spatial_params, in_row_words),
    SD_SIZE(sd_spec_concat_params),
    SD_OFF(sd_spec_concat_params, n_inputs), SD_OFF(sd_spec_concat_params, C),
    SD_OFF(sd_spec_concat_params, in_row_words), SD_OFF(sd_spec_concat_params, Hs),
    SD_OFF(sd_spec_concat_params, Ws), SD_OFF(sd_spec_concat_params, capacity),
    SD_OFF(sd_spec_concat_params, value_dtype),
    SD_CONST(SD_MAX_CONCAT_INPUTS), SD_CONST(SD_NLEV), SD_CONST(SD_NOCT), SD_CONST(SD_NFINE), SD_CONST(SD_HIST_WORDS),
    {"kWsAlign", (int64_t)sd::kWsAlign}, {"kHybBudgetDiv", (int64_t)sd::kHybBudgetDiv},
    {"kHybMaxChannels", (int64_t)sd::kHybMaxChannels}, {"kHybStreamMaxC", (int64_t)sd::kHybStreamMaxC},
    {"kHybSmemMaxF", (int64_t)sd::kHybSmemMaxF},
    SD_CONST(SD_OK), SD_CONST(SD_ERR_INVALID_ARGUMENT), SD_CONST(SD_ERR_WORKSPACE), SD_CONST(SD_ERR_CUDA),
    SD_CONST(SD_ERR_UNSUPPORTED), SD_CONST(SD_ERR_INTERNAL),
    SD_CONST(SD_VALUE_FP32), SD_CONST(SD_VALUE_FP16), SD_CONST(SD_DOMAIN_SPATIAL), SD_CONST(SD_DOMAIN_SPECTRAL),
    SD_CONST(SD_ACT_NONE), SD_CONST(SD_ACT_TANH), SD_CONST(SD_ACT_RELU), SD_CONST(SD_POOL_NONE), SD_CONST(SD_POOL_MAX2),
    SD_CONST(SD_POOL_AVG2), SD_CONST(SD_FLOAT32), SD_CONST(SD_FLOAT16),
    SD_CONST(SD_SPECTRUM_AUTO), SD_CONST(SD_SPECTRUM_DENSE), SD_CONST(SD_SPECTRUM_STREAMED),
};

}  // namespace

extern "C" SD_API int64_t sd_abi_query(const char* name) {
    if (name == nullptr) return -1;
    for (const Entry& e : kEntries)
        if (strcmp(e.name, name) == 0) return e.value;
    return -1;
}
