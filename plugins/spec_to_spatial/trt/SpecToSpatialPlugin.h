/*
 * TensorRT IPluginV3 adapter of the SpecToSpatial op (docs/ops.md) over the C ABI
 * (specdeploy_c.h: sd_spec_to_spatial_*). Plugin name "SpecToSpatial", version "1", namespace "".
 * Output: float32 [B, C, Hs, Ws] (declared type); float16 is accepted where TensorRT picks it
 * (weakly typed networks built with fp16 enabled).
 * The IPluginV3 methods are PluginBase's (trt_common/pluginBase.h); this file has the op's part.
 */
#ifndef SPECDEPLOY_SPEC_TO_SPATIAL_PLUGIN_H
#define SPECDEPLOY_SPEC_TO_SPATIAL_PLUGIN_H

#include "trt_common/pluginBase.h"

#include <string>

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

    template <typename V>
    void fields(V& v)
    {
        v.integer("C", C);
        v.integer("Hs", Hs);
        v.integer("Ws", Ws);
        v.choice("value_dtype", valueDtypeStr, valueDtype, parseValueDtype);
    }
};

class SpecToSpatialPlugin
    : public PackedInputPlugin<SpecToSpatialPlugin, SpecToSpatialAttrs, sd_spec_to_spatial_params>
{
public:
    static constexpr char const* kNAME = "SpecToSpatial";
    static constexpr char const* kABI = "sd_spec_to_spatial";
    static constexpr auto kValidate = sd_spec_to_spatial_validate;
    static constexpr auto kWorkspaceSize = sd_spec_to_spatial_workspace_size;
    //! The op set defines the output as float32 (docs/ops.md). Strongly typed networks get exactly that;
    //! weakly typed fp16 builds may still pick kHALF through supportsType.
    static constexpr nvinfer1::DataType kOUTPUT_TYPE = nvinfer1::DataType::kFLOAT;

    using PackedInputPlugin::PackedInputPlugin;

    // Hooks of PluginBase (the input checks are PackedInputPlugin's)
    //! y_type from the output's type (float32 where it is not known yet).
    bool fillParams(Tensors const& t, sd_spec_to_spatial_params& p, std::string& err) const;
    bool supportsType(int32_t pos, nvinfer1::DataType type, int32_t nbInputs) const noexcept;
    //! [B, C, Hs, Ws] from the fields.
    bool outputShape(sd_spec_to_spatial_params const& p, nvinfer1::DimsExprs const* inputs,
        nvinfer1::IExprBuilder& exprBuilder, nvinfer1::DimsExprs& out, std::string& err) const;
    //! onShapeChange: [B, C, Hs, Ws] (configurePlugin: TensorRT's shape is getOutputShapes').
    bool checkOutput(
        sd_spec_to_spatial_params const& p, nvinfer1::Dims const& out, Stage stage, std::string& err) const;
    sd_status forward(sd_spec_to_spatial_params const& p, int32_t batch, void const* const* inputs,
        void* const* outputs, void* workspace, size_t workspaceBytes, cudaStream_t stream) const;
};

using SpecToSpatialPluginCreator = PluginCreator<SpecToSpatialPlugin>;

} // namespace trt
} // namespace specdeploy

#endif /* SPECDEPLOY_SPEC_TO_SPATIAL_PLUGIN_H */
