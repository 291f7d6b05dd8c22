/*
 * TensorRT IPluginV3 adapter of the SpecConcat op (docs/ops.md) over the C ABI
 * (specdeploy_c.h: sd_spec_concat_*). Plugin name "SpecConcat", version "1", namespace "".
 * Field "C" is an int32 array (ONNX INTS), one entry per input.
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
};

class SpecConcatPlugin : public PluginBase<SpecConcatPlugin>
{
public:
    static constexpr char const* kNAME = "SpecConcat";

    SpecConcatPlugin(std::string node, SpecConcatAttrs attrs);
    SpecConcatPlugin(SpecConcatPlugin const&) = default;
    ~SpecConcatPlugin() override = default;

    //! sd_spec_concat_params for inputs of inWords[i] words per row (nullptr or -1 entries: unknown;
    //! then valid placeholders are used if allowed). False + message when sd_spec_concat_validate
    //! refuses it.
    bool makeParams(int64_t const* inWords, bool allowPlaceholders, sd_spec_concat_params& p, std::string& err) const;

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
    //! Number of inputs equals the length of C, every input is rank 2; false + message otherwise.
    bool checkInputs(int32_t nbInputs, std::string& err) const;

    SpecConcatAttrs mAttrs;
    std::string mMetadata;
    FieldWriter mSerial;
    sd_spec_concat_params mRt{};
    bool mRtReady{false};
};

class SpecConcatPluginCreator : public CreatorBase<SpecConcatPlugin>
{
public:
    SpecConcatPluginCreator();
    ~SpecConcatPluginCreator() override = default;

    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldStorage;
    nvinfer1::PluginFieldCollection mFieldNames{};
};

} // namespace trt
} // namespace specdeploy

#endif /* SPECDEPLOY_SPEC_CONCAT_PLUGIN_H */
