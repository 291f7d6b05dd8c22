/*
 * TensorRT IPluginV3 adapter of the SpecConcat op (docs/ops.md) over the C ABI
 * (specdeploy_c.h: sd_spec_concat_*). Plugin name "SpecConcat", version "1", namespace "".
 * Field "C" is an int32 array (ONNX INTS), one entry per input.
 * The IPluginV3 methods are PluginBase's (trt_common/pluginBase.h); this file has the op's part.
 */
#ifndef SPECDEPLOY_SPEC_CONCAT_PLUGIN_H
#define SPECDEPLOY_SPEC_CONCAT_PLUGIN_H

#include "trt_common/pluginBase.h"

#include <string>
#include <vector>

namespace specdeploy
{
namespace trt
{

struct SpecConcatAttrs
{
    std::string valueDtypeStr;
    std::vector<int32_t> C;
    int32_t Hs{0};
    int32_t Ws{0};
    int32_t capacity{0};
    int32_t valueDtype{SD_VALUE_FP32};

    template <typename V>
    void fields(V& v)
    {
        v.integers("C", C);
        v.integer("Hs", Hs);
        v.integer("Ws", Ws);
        v.integer("capacity", capacity);
        v.choice("value_dtype", valueDtypeStr, valueDtype, parseValueDtype);
    }
};

class SpecConcatPlugin : public PluginBase<SpecConcatPlugin, SpecConcatAttrs, sd_spec_concat_params>
{
public:
    static constexpr char const* kNAME = "SpecConcat";
    static constexpr char const* kABI = "sd_spec_concat";
    static constexpr auto kValidate = sd_spec_concat_validate;
    static constexpr auto kOutRowWords = sd_spec_concat_out_row_words;
    static constexpr auto kWorkspaceSize = sd_spec_concat_workspace_size;
    static constexpr nvinfer1::DataType kOUTPUT_TYPE = nvinfer1::DataType::kINT32;

    using PluginBase::PluginBase;

    // Hooks of PluginBase (formats: the default, int32 everywhere)
    //! Number of inputs equals the length of C.
    bool checkInputCount(Stage stage, int32_t nbInputs, std::string& err) const;
    bool checkInputTypes(nvinfer1::DataType const* types, int32_t nbInputs, std::string& err) const;
    //! Every input rank 2 (getOutputShapes) and of the same batch (onShapeChange); the length of C (also
    //! what createPlugin checks); unknown widths get placeholders where allowed.
    bool fillParams(Tensors const& t, sd_spec_concat_params& p, std::string& err) const;
    sd_status forward(sd_spec_concat_params const& p, int32_t batch, void const* const* inputs, void* const* outputs,
        void* workspace, size_t workspaceBytes, cudaStream_t stream) const;
};

using SpecConcatPluginCreator = PluginCreator<SpecConcatPlugin>;

} // namespace trt
} // namespace specdeploy

#endif /* SPECDEPLOY_SPEC_CONCAT_PLUGIN_H */
