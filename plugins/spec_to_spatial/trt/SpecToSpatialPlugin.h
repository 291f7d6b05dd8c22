/*
 * TensorRT IPluginV3 adapter of the SpecToSpatial op (docs/ops.md) over the C ABI
 * (specdeploy_c.h: sd_spec_to_spatial_*). Plugin name "SpecToSpatial", version "1", namespace "".
 * Output: float32 [B, C, Hs, Ws] (declared type); float16 is accepted where TensorRT picks it
 * (weakly typed networks built with fp16 enabled).
 */
#ifndef SPECDEPLOY_SPEC_TO_SPATIAL_PLUGIN_H
#define SPECDEPLOY_SPEC_TO_SPATIAL_PLUGIN_H

#include "trt_common/pluginBase.h"

#include <string>
#include <vector>

namespace specdeploy
{
namespace trt
{

struct SpecToSpatialAttrs
{
    std::string valueDtypeStr;
    int32_t C{0};
    int32_t Hs{0};
    int32_t Ws{0};
    int32_t valueDtype{SD_VALUE_FP32};
};

class SpecToSpatialPlugin : public PluginBase<SpecToSpatialPlugin>
{
public:
    static constexpr char const* kNAME = "SpecToSpatial";

    SpecToSpatialPlugin(std::string node, SpecToSpatialAttrs attrs);
    SpecToSpatialPlugin(SpecToSpatialPlugin const&) = default;
    ~SpecToSpatialPlugin() override = default;

    //! sd_spec_to_spatial_params for a packed input of `inWords` words per row (-1: unknown; then a valid
    //! placeholder is used if allowed) and an output of `yType` (SD_FLOAT32/SD_FLOAT16). False + message
    //! when sd_spec_to_spatial_validate refuses it.
    bool makeParams(int64_t inWords, int32_t yType, bool allowPlaceholders, sd_spec_to_spatial_params& p,
        std::string& err) const;

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
    //! Checks rank/type of the single packed input; false + message otherwise.
    bool checkInput(nvinfer1::Dims const& dims, int32_t nbInputs, std::string& err) const;

    SpecToSpatialAttrs mAttrs;
    std::string mMetadata;
    FieldWriter mSerial;
    sd_spec_to_spatial_params mRt{};
    bool mRtReady{false};
};

class SpecToSpatialPluginCreator : public CreatorBase<SpecToSpatialPlugin>
{
public:
    SpecToSpatialPluginCreator();
    ~SpecToSpatialPluginCreator() override = default;

    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldStorage;
    nvinfer1::PluginFieldCollection mFieldNames{};
};

} // namespace trt
} // namespace specdeploy

#endif /* SPECDEPLOY_SPEC_TO_SPATIAL_PLUGIN_H */
