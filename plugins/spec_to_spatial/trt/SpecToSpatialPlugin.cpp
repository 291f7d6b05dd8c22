#include "SpecToSpatialPlugin.h"

#include <memory>
#include <sstream>

namespace specdeploy
{
namespace trt
{

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

SpecToSpatialPlugin::SpecToSpatialPlugin(std::string node, SpecToSpatialAttrs attrs)
    : PluginBase<SpecToSpatialPlugin>(std::move(node))
    , mAttrs(std::move(attrs))
{
    std::ostringstream os;
    os << kNAME << " C=" << mAttrs.C << " Hs=" << mAttrs.Hs << " Ws=" << mAttrs.Ws
       << " value_dtype=" << mAttrs.valueDtypeStr;
    mMetadata = os.str();
}

bool SpecToSpatialPlugin::makeParams(
    int64_t inWords, int32_t yType, bool allowPlaceholders, sd_spec_to_spatial_params& p, std::string& err) const
{
    SpecToSpatialAttrs const& a = mAttrs;
    p = sd_spec_to_spatial_params{};
    p.C = a.C;
    p.Hs = a.Hs;
    p.Ws = a.Ws;
    p.value_dtype = a.valueDtype;
    p.y_type = yType;
    if (inWords >= 0)
    {
        p.in_row_words = inWords;
    }
    else if (allowPlaceholders)
    {
        p.in_row_words = sd_packed_row_words(a.C, numCoeffs(a.Hs, a.Ws), 1, a.valueDtype);
    }
    else
    {
        err = "the packed width S_in of the input must be static";
        return false;
    }
    sd_status const st = sd_spec_to_spatial_validate(&p);
    if (st != SD_OK)
    {
        err = lastAbiError(st);
        return false;
    }
    return true;
}

bool SpecToSpatialPlugin::checkInput(Dims const& dims, int32_t nbInputs, std::string& err) const
{
    if (nbInputs != 1)
    {
        err = "needs exactly 1 input, got " + std::to_string(nbInputs);
        return false;
    }
    if (dims.nbDims != 2)
    {
        err = "input must be packed int32 [B, S_in], got rank " + std::to_string(dims.nbDims);
        return false;
    }
    return true;
}

int32_t SpecToSpatialPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    SD_TRT_TRY
    {
        if (outputTypes == nullptr || nbOutputs != 1 || nbInputs != 1)
        {
            logError(whoAmI() + ": getOutputDataTypes: needs 1 input and 1 output, got " + std::to_string(nbInputs)
                + " and " + std::to_string(nbOutputs));
            return -1;
        }
        if (inputTypes != nullptr && inputTypes[0] != DataType::kINT32)
        {
            logError(whoAmI() + ": the input must be int32 (packed)");
            return -1;
        }
        // The op set defines the output as float32 (docs/ops.md). Strongly typed networks get exactly
        // that; weakly typed fp16 builds may still pick kHALF through supportsFormatCombination.
        outputTypes[0] = DataType::kFLOAT;
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": getOutputDataTypes", -1)
}

int32_t SpecToSpatialPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    SD_TRT_TRY
    {
        std::string err;
        if (inputs == nullptr || outputs == nullptr || nbOutputs != 1)
        {
            logError(whoAmI() + ": getOutputShapes: needs exactly 1 output");
            return -1;
        }
        Dims d{};
        d.nbDims = nbInputs >= 1 ? inputs[0].nbDims : 0;
        for (int32_t j = 0; j < d.nbDims && j < Dims::MAX_DIMS; ++j)
        {
            d.d[j] = constantOr(inputs[0].d[j]);
        }
        sd_spec_to_spatial_params p{};
        if (!checkInput(d, nbInputs, err) || !makeParams(dimOr(d, 1), SD_FLOAT32, true, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        outputs[0].nbDims = 4;
        outputs[0].d[0] = inputs[0].d[0];
        outputs[0].d[1] = exprBuilder.constant(mAttrs.C);
        outputs[0].d[2] = exprBuilder.constant(mAttrs.Hs);
        outputs[0].d[3] = exprBuilder.constant(mAttrs.Ws);
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": getOutputShapes", -1)
}

bool SpecToSpatialPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos < nbInputs)
    {
        return d.type == DataType::kINT32;
    }
    return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
}

int32_t SpecToSpatialPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    SD_TRT_TRY
    {
        if (!deviceOk())
        {
            return -1;
        }
        std::string err;
        sd_spec_to_spatial_params p{};
        if (in == nullptr || out == nullptr || nbOutputs != 1)
        {
            logError(whoAmI() + ": configurePlugin: needs exactly 1 output");
            return -1;
        }
        int32_t const yType = floatTypeOf(out[0].desc.type);
        if (yType < 0)
        {
            logError(whoAmI() + ": the output must be float32 or float16");
            return -1;
        }
        if (!checkInput(in[0].desc.dims, nbInputs, err)
            || !makeParams(dimOr(knownDims(in[0]), 1), yType, false, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": configurePlugin", -1)
}

size_t SpecToSpatialPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept
{
    SD_TRT_TRY
    {
        std::string err;
        sd_spec_to_spatial_params p{};
        int32_t const yType = (outputs != nullptr && nbOutputs == 1) ? floatTypeOf(outputs[0].desc.type) : SD_FLOAT32;
        if (inputs == nullptr || !checkInput(inputs[0].max, nbInputs, err)
            || !makeParams(dimOr(inputs[0].max, 1), yType < 0 ? SD_FLOAT32 : yType, false, p, err))
        {
            logError(whoAmI() + ": getWorkspaceSize: " + err);
            return 0;
        }
        int64_t const maxBatch = dimOr(inputs[0].max, 0);
        if (!fitsInt32(maxBatch))
        {
            logError(whoAmI() + ": getWorkspaceSize: max batch " + std::to_string(maxBatch) + " is not usable");
            return 0;
        }
        size_t bytes{0};
        sd_status const st = sd_spec_to_spatial_workspace_size(&p, static_cast<int32_t>(maxBatch), &bytes);
        if (st != SD_OK)
        {
            logError(whoAmI() + ": sd_spec_to_spatial_workspace_size: " + lastAbiError(st));
            return 0;
        }
        return bytes;
    }
    SD_TRT_CATCH(whoAmI() + ": getWorkspaceSize", 0)
}

char const* SpecToSpatialPlugin::getMetadataString() noexcept
{
    return mMetadata.c_str();
}

int32_t SpecToSpatialPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    SD_TRT_TRY
    {
        mRtReady = false;
        if (!deviceOk())
        {
            return -1;
        }
        std::string err;
        sd_spec_to_spatial_params p{};
        if (in == nullptr || out == nullptr || nbOutputs != 1)
        {
            logError(whoAmI() + ": onShapeChange: needs exactly 1 output");
            return -1;
        }
        int32_t const yType = floatTypeOf(out[0].type);
        if (yType < 0)
        {
            logError(whoAmI() + ": the output must be float32 or float16");
            return -1;
        }
        if (!checkInput(in[0].dims, nbInputs, err) || !makeParams(dimOr(in[0].dims, 1), yType, false, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        Dims const& o = out[0].dims;
        if (o.nbDims != 4 || o.d[1] != mAttrs.C || o.d[2] != mAttrs.Hs || o.d[3] != mAttrs.Ws)
        {
            logError(whoAmI() + ": output must be [B, C, Hs, Ws] = [B, " + std::to_string(mAttrs.C) + ", "
                + std::to_string(mAttrs.Hs) + ", " + std::to_string(mAttrs.Ws) + "]");
            return -1;
        }
        mRt = p;
        mRtReady = true;
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": onShapeChange", -1)
}

int32_t SpecToSpatialPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    SD_TRT_TRY
    {
        if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr)
        {
            logError(whoAmI() + ": enqueue: null arguments");
            return -1;
        }
        if (!mRtReady)
        {
            logError(whoAmI() + ": enqueue before a successful onShapeChange");
            return -1;
        }
        int64_t const batch = dimOr(inputDesc[0].dims, 0);
        if (!fitsInt32(batch))
        {
            logError(whoAmI() + ": enqueue: batch " + std::to_string(batch) + " is not usable");
            return -1;
        }
        if (batch == 0)
        {
            return 0;
        }
        int32_t const b = static_cast<int32_t>(batch);
        size_t wsBytes{0};
        sd_status st = sd_spec_to_spatial_workspace_size(&mRt, b, &wsBytes);
        if (st == SD_OK)
        {
            st = sd_spec_to_spatial_forward(&mRt, b, static_cast<int32_t const*>(inputs[0]), outputs[0], workspace,
                wsBytes, static_cast<void*>(stream));
        }
        if (st != SD_OK)
        {
            logError(whoAmI() + ": sd_spec_to_spatial_forward: " + lastAbiError(st));
            return -1;
        }
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": enqueue", -1)
}

nvinfer1::PluginFieldCollection const* SpecToSpatialPlugin::getFieldsToSerialize() noexcept
{
    SD_TRT_TRY
    {
        mSerial.clear();
        mSerial.addInt("C", &mAttrs.C);
        mSerial.addInt("Hs", &mAttrs.Hs);
        mSerial.addInt("Ws", &mAttrs.Ws);
        mSerial.addString("value_dtype", mAttrs.valueDtypeStr);
        return mSerial.collection();
    }
    SD_TRT_CATCH(whoAmI() + ": getFieldsToSerialize", nullptr)
}

// ---------------------------------------------------------------------------------------------
// Creator

SpecToSpatialPluginCreator::SpecToSpatialPluginCreator()
{
    try
    {
        makeFieldNames(mFieldStorage, mFieldNames,
            {{"C", PluginFieldType::kINT32}, {"Hs", PluginFieldType::kINT32}, {"Ws", PluginFieldType::kINT32},
                {"value_dtype", PluginFieldType::kCHAR}});
    }
    catch (...)
    {
        mFieldStorage.clear();
        mFieldNames = nvinfer1::PluginFieldCollection{};
        logError("SpecToSpatial creator: could not build the field list");
    }
}

nvinfer1::PluginFieldCollection const* SpecToSpatialPluginCreator::getFieldNames() noexcept
{
    return &mFieldNames;
}

nvinfer1::IPluginV3* SpecToSpatialPluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    std::string node;
    SD_TRT_TRY
    {
        node = name != nullptr ? name : "";
        FieldReader r(SpecToSpatialPlugin::kNAME, node, fc);
        SpecToSpatialAttrs a;
        r.getInt("C", a.C);
        r.getInt("Hs", a.Hs);
        r.getInt("Ws", a.Ws);
        if (r.getString("value_dtype", a.valueDtypeStr))
        {
            parseValueDtype(r, a.valueDtypeStr, a.valueDtype);
        }
        if (!r.ok())
        {
            logError(r.errors());
            return nullptr;
        }
        auto plugin = std::make_unique<SpecToSpatialPlugin>(node, a);
        sd_spec_to_spatial_params p{};
        std::string err;
        if (!plugin->makeParams(-1, SD_FLOAT32, /*allowPlaceholders=*/true, p, err))
        {
            logError(who(SpecToSpatialPlugin::kNAME, node) + ": " + err);
            return nullptr;
        }
        return plugin.release();
    }
    SD_TRT_CATCH(who(SpecToSpatialPlugin::kNAME, node) + ": createPlugin", nullptr)
}

} // namespace trt
} // namespace specdeploy
