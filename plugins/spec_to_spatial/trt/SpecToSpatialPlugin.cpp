#include "SpecToSpatialPlugin.h"

namespace specdeploy
{
namespace trt
{

using nvinfer1::DataType;

bool SpecToSpatialPlugin::fillParams(Tensors const& t, sd_spec_to_spatial_params& p, std::string& err) const
{
    p.y_type = SD_FLOAT32;
    if (t.out != nullptr)
    {
        int32_t const yType = floatTypeOf(t.out->type);
        if (yType >= 0)
        {
            p.y_type = yType;
        }
        else if (t.stage != Stage::kWORKSPACE) // getWorkspaceSize: the float32 workspace
        {
            err = "the output must be float32 or float16";
            return false;
        }
    }
    return fillInput(t, p, err);
}

bool SpecToSpatialPlugin::supportsType(int32_t pos, DataType type, int32_t nbInputs) const noexcept
{
    if (pos < nbInputs)
    {
        return type == DataType::kINT32;
    }
    return type == DataType::kFLOAT || type == DataType::kHALF;
}

bool SpecToSpatialPlugin::outputShape(sd_spec_to_spatial_params const& /*p*/, nvinfer1::DimsExprs const* inputs,
    nvinfer1::IExprBuilder& exprBuilder, nvinfer1::DimsExprs& out, std::string& /*err*/) const
{
    out.nbDims = 4;
    out.d[0] = inputs[0].d[0];
    out.d[1] = exprBuilder.constant(mAttrs.C);
    out.d[2] = exprBuilder.constant(mAttrs.Hs);
    out.d[3] = exprBuilder.constant(mAttrs.Ws);
    return true;
}

bool SpecToSpatialPlugin::checkOutput(
    sd_spec_to_spatial_params const& /*p*/, nvinfer1::Dims const& o, Stage stage, std::string& err) const
{
    if (stage != Stage::kRUNTIME) // configurePlugin: TensorRT's shape is getOutputShapes'
    {
        return true;
    }
    if (o.nbDims != 4 || o.d[1] != mAttrs.C || o.d[2] != mAttrs.Hs || o.d[3] != mAttrs.Ws)
    {
        err = "output must be [B, C, Hs, Ws] = [B, " + std::to_string(mAttrs.C) + ", " + std::to_string(mAttrs.Hs)
            + ", " + std::to_string(mAttrs.Ws) + "]";
        return false;
    }
    return true;
}

sd_status SpecToSpatialPlugin::forward(sd_spec_to_spatial_params const& p, int32_t batch, void const* const* inputs,
    void* const* outputs, void* workspace, size_t workspaceBytes, cudaStream_t stream) const
{
    return sd_spec_to_spatial_forward(&p, batch, static_cast<int32_t const*>(inputs[0]), outputs[0], workspace,
        workspaceBytes, static_cast<void*>(stream));
}

} // namespace trt
} // namespace specdeploy
