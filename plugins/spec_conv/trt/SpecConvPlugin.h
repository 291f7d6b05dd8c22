/*
 * TensorRT IPluginV3 adapter of the SpecConv op (docs/ops.md) over the C ABI
 * (specdeploy_c.h: sd_spec_conv_*). Plugin name "SpecConv", version "1", namespace "".
 * The IPluginV3 methods are PluginBase's (trt_common/pluginBase.h); this file has the op's part.
 */
#ifndef SPECDEPLOY_SPEC_CONV_PLUGIN_H
#define SPECDEPLOY_SPEC_CONV_PLUGIN_H

#include "trt_common/pluginBase.h"

#include <string>

namespace specdeploy
{
namespace trt
{

//! The ONNX attributes of one SpecConv node (strings kept for serialization).
struct SpecConvAttrs
{
    std::string inDomainStr;
    std::string activationStr;
    std::string poolStr{"none"};
    std::string valueDtypeStr;
    int32_t inDomain{SD_DOMAIN_SPATIAL};
    int32_t C{0};
    int32_t Hs{0};
    int32_t Ws{0};
    int32_t k{0};
    float beta{0.F};
    int32_t activation{SD_ACT_TANH};
    int32_t pool{SD_POOL_NONE};
    int32_t capacity{0};
    int32_t valueDtype{SD_VALUE_FP32};

    template <typename V>
    void fields(V& v)
    {
        v.choice("in_domain", inDomainStr, inDomain, parseDomain);
        v.integer("C", C);
        v.integer("Hs", Hs);
        v.integer("Ws", Ws);
        v.integer("k", k);
        v.real("beta", beta);
        v.choice("activation", activationStr, activation, parseActivation);
        v.optionalChoice("pool", poolStr, pool, parsePool); // hybrid block; absent in paper-block files
        v.integer("capacity", capacity);
        v.choice("value_dtype", valueDtypeStr, valueDtype, parseValueDtype);
    }
};

//! What TensorRT knows about the inputs at a given moment; -1 = not known (yet).
struct SpecConvShapes
{
    int64_t O{-1};       //!< W.shape[0]
    int64_t H{-1};       //!< spatial input height
    int64_t W{-1};       //!< spatial input width
    int64_t inWords{-1}; //!< packed input row words
    int32_t xType{SD_FLOAT32};
    bool hasBias{false};
};

class SpecConvPlugin : public PluginBase<SpecConvPlugin, SpecConvAttrs, sd_spec_conv_params>
{
public:
    static constexpr char const* kNAME = "SpecConv";
    static constexpr char const* kABI = "sd_spec_conv";
    static constexpr auto kValidate = sd_spec_conv_validate;
    static constexpr auto kOutRowWords = sd_spec_conv_out_row_words;
    static constexpr auto kWorkspaceSize = sd_spec_conv_workspace_size;
    static constexpr nvinfer1::DataType kOUTPUT_TYPE = nvinfer1::DataType::kINT32;

    using PluginBase::PluginBase;

    // Hooks of PluginBase
    //! 2 inputs (X, W) or 3 (X, W, B); onShapeChange leaves it to shapesFrom().
    bool checkInputCount(Stage stage, int32_t nbInputs, std::string& err) const;
    bool checkInputTypes(nvinfer1::DataType const* types, int32_t nbInputs, std::string& err) const;
    //! From the fields and shapesFrom(); sizes not known get placeholders that are valid whenever the
    //! fields are, where allowed (Tensors::placeholders()).
    bool fillParams(Tensors const& t, sd_spec_conv_params& p, std::string& err) const;
    bool supportsType(int32_t pos, nvinfer1::DataType type, int32_t nbInputs) const noexcept;
    sd_status forward(sd_spec_conv_params const& p, int32_t batch, void const* const* inputs, void* const* outputs,
        void* workspace, size_t workspaceBytes, cudaStream_t stream) const;

private:
    //! Shapes from the tensors; false + message when ranks, types or sizes disagree with the fields.
    bool shapesFrom(Tensors const& t, SpecConvShapes& s, std::string& err) const;
    bool checkNbInputs(int32_t nbInputs, std::string& err) const;
};

using SpecConvPluginCreator = PluginCreator<SpecConvPlugin>;

} // namespace trt
} // namespace specdeploy

#endif /* SPECDEPLOY_SPEC_CONV_PLUGIN_H */
