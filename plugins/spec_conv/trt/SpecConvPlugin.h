/*
 * TensorRT IPluginV3 adapter of the SpecConv op (docs/ops.md) over the C ABI
 * (specdeploy_c.h: sd_spec_conv_*). Plugin name "SpecConv", version "1", namespace "".
 */
#ifndef SPECDEPLOY_SPEC_CONV_PLUGIN_H
#define SPECDEPLOY_SPEC_CONV_PLUGIN_H

#include "trt_common/pluginBase.h"

#include <string>
#include <vector>

namespace specdeploy
{
namespace trt
{

//! The ONNX attributes of one SpecConv node (strings kept for serialization).
struct SpecConvAttrs
{
    std::string inDomainStr;
    std::string activationStr;
    std::string valueDtypeStr;
    int32_t inDomain{SD_DOMAIN_SPATIAL};
    int32_t C{0};
    int32_t Hs{0};
    int32_t Ws{0};
    int32_t k{0};
    float beta{0.F};
    int32_t activation{SD_ACT_TANH};
    int32_t capacity{0};
    int32_t valueDtype{SD_VALUE_FP32};
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

class SpecConvPlugin : public PluginBase<SpecConvPlugin>
{
public:
    static constexpr char const* kNAME = "SpecConv";

    SpecConvPlugin(std::string node, SpecConvAttrs attrs);
    SpecConvPlugin(SpecConvPlugin const&) = default;
    ~SpecConvPlugin() override = default;

    //! sd_spec_conv_params from the attributes and `s`; unknown sizes get placeholders that are
    //! valid whenever the attributes are (used only by the creation-time check). False + message in
    //! `err` when the combination is invalid (checked with sd_spec_conv_validate).
    bool makeParams(SpecConvShapes const& s, bool allowPlaceholders, sd_spec_conv_params& p, std::string& err) const;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    char const* getMetadataString() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    //! Shapes from concrete/partial tensor descriptions; false + message when ranks or sizes disagree
    //! with the attributes.
    bool shapesFrom(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::Dims const* dimsOverride,
        SpecConvShapes& s, std::string& err) const;
    bool checkNbInputs(int32_t nbInputs, std::string& err) const;

    SpecConvAttrs mAttrs;
    std::string mMetadata;
    FieldWriter mSerial;
    sd_spec_conv_params mRt{}; //!< parameters for enqueue, set by onShapeChange (batch-independent)
    bool mRtReady{false};
};

class SpecConvPluginCreator : public CreatorBase<SpecConvPlugin>
{
public:
    SpecConvPluginCreator();
    ~SpecConvPluginCreator() override = default;

    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldStorage;
    nvinfer1::PluginFieldCollection mFieldNames{};
};

} // namespace trt
} // namespace specdeploy

#endif /* SPECDEPLOY_SPEC_CONV_PLUGIN_H */
