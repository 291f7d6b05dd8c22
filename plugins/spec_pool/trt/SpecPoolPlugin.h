/*
 * TensorRT IPluginV3 adapter of the SpecPool op (docs/ops.md) over the C ABI
 * (specdeploy_c.h: sd_spec_pool_*). Plugin name "SpecPool", version "1", namespace "".
 * The IPluginV3 methods are PluginBase's (trt_common/pluginBase.h); this file has the op's part.
 */
#ifndef SPECDEPLOY_SPEC_POOL_PLUGIN_H
#define SPECDEPLOY_SPEC_POOL_PLUGIN_H

#include "trt_common/pluginBase.h"

#include <string>

namespace specdeploy
{
namespace trt
{

struct SpecPoolAttrs
{
    std::string valueDtypeStr;
    int32_t C{0};
    int32_t Hs{0};
    int32_t Ws{0};
    int32_t outHs{0};
    int32_t outWs{0};
    int32_t capacity{0};
    int32_t valueDtype{SD_VALUE_FP32};

    template <typename V>
    void fields(V& v)
    {
        v.integer("C", C);
        v.integer("Hs", Hs);
        v.integer("Ws", Ws);
        v.integer("out_Hs", outHs);
        v.integer("out_Ws", outWs);
        v.integer("capacity", capacity);
        v.choice("value_dtype", valueDtypeStr, valueDtype, parseValueDtype);
    }
};

class SpecPoolPlugin : public PackedInputPlugin<SpecPoolPlugin, SpecPoolAttrs, sd_spec_pool_params>
{
public:
    static constexpr char const* kNAME = "SpecPool";
    static constexpr char const* kABI = "sd_spec_pool";
    static constexpr auto kValidate = sd_spec_pool_validate;
    static constexpr auto kOutRowWords = sd_spec_pool_out_row_words;
    static constexpr auto kWorkspaceSize = sd_spec_pool_workspace_size;
    static constexpr nvinfer1::DataType kOUTPUT_TYPE = nvinfer1::DataType::kINT32;

    using PackedInputPlugin::PackedInputPlugin;

    // Hooks of PluginBase (the input checks are PackedInputPlugin's)
    bool fillParams(Tensors const& t, sd_spec_pool_params& p, std::string& err) const;
    sd_status forward(sd_spec_pool_params const& p, int32_t batch, void const* const* inputs, void* const* outputs,
        void* workspace, size_t workspaceBytes, cudaStream_t stream) const;
};

using SpecPoolPluginCreator = PluginCreator<SpecPoolPlugin>;

} // namespace trt
} // namespace specdeploy

#endif /* SPECDEPLOY_SPEC_POOL_PLUGIN_H */
