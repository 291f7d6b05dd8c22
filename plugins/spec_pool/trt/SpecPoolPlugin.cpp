#include "SpecPoolPlugin.h"

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

SpecPoolPlugin::SpecPoolPlugin(std::string node, SpecPoolAttrs attrs)
    : PluginBase<SpecPoolPlugin>(std::move(node))
    , mAttrs(std::move(attrs))
{
    std::ostringstream os;
    os << kNAME << " C=" << mAttrs.C << " Hs=" << mAttrs.Hs << " Ws=" << mAttrs.Ws << " out_Hs=" << mAttrs.outHs
       << " out_Ws=" << mAttrs.outWs << " capacity=" << mAttrs.capacity << " value_dtype=" << mAttrs.valueDtypeStr;
    mMetadata = os.str();
}

bool SpecPoolPlugin::makeParams(
    int64_t inWords, bool allowPlaceholders, sd_spec_pool_params& p, std::string& err) const
{
    SpecPoolAttrs const& a = mAttrs;
    p = sd_spec_pool_params{};
    p.C = a.C;
    p.Hs = a.Hs;
    p.Ws = a.Ws;
    p.out_Hs = a.outHs;
    p.out_Ws = a.outWs;
    p.capacity = a.capacity;
    p.value_dtype = a.valueDtype;
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
    sd_status const st = sd_spec_pool_validate(&p);
    if (st != SD_OK)
    {
        err = lastAbiError(st);
        return false;
    }
    return true;
}

bool SpecPoolPlugin::checkInput(Dims const& dims, int32_t nbInputs, std::string& err) const
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

int32_t SpecPoolPlugin::getOutputDataTypes(
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
        outputTypes[0] = DataType::kINT32;
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": getOutputDataTypes", -1)
}

int32_t SpecPoolPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
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
        sd_spec_pool_params p{};
        if (!checkInput(d, nbInputs, err) || !makeParams(dimOr(d, 1), true, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        int64_t const words = sd_spec_pool_out_row_words(&p);
        if (words <= 0)
        {
            logError(whoAmI() + ": sd_spec_pool_out_row_words failed: " + lastAbiError(SD_ERR_INVALID_ARGUMENT));
            return -1;
        }
        outputs[0].nbDims = 2;
        outputs[0].d[0] = inputs[0].d[0];
        outputs[0].d[1] = exprBuilder.constant(words);
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": getOutputShapes", -1)
}

bool SpecPoolPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& d = inOut[pos].desc;
    return d.format == TensorFormat::kLINEAR && d.type == DataType::kINT32;
}

int32_t SpecPoolPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    SD_TRT_TRY
    {
        if (!deviceOk())
        {
            return -1;
        }
        std::string err;
        sd_spec_pool_params p{};
        if (in == nullptr || out == nullptr || nbOutputs != 1)
        {
            logError(whoAmI() + ": configurePlugin: needs exactly 1 output");
            return -1;
        }
        if (!checkInput(in[0].desc.dims, nbInputs, err) || !makeParams(dimOr(knownDims(in[0]), 1), false, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        int64_t const words = sd_spec_pool_out_row_words(&p);
        int64_t const outWords = dimOr(knownDims(out[0]), 1);
        if (outWords >= 0 && outWords != words)
        {
            logError(whoAmI() + ": output width " + std::to_string(outWords) + " != S_out = " + std::to_string(words));
            return -1;
        }
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": configurePlugin", -1)
}

size_t SpecPoolPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    SD_TRT_TRY
    {
        std::string err;
        sd_spec_pool_params p{};
        if (inputs == nullptr || !checkInput(inputs[0].max, nbInputs, err)
            || !makeParams(dimOr(inputs[0].max, 1), false, p, err))
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
        sd_status const st = sd_spec_pool_workspace_size(&p, static_cast<int32_t>(maxBatch), &bytes);
        if (st != SD_OK)
        {
            logError(whoAmI() + ": sd_spec_pool_workspace_size: " + lastAbiError(st));
            return 0;
        }
        return bytes;
    }
    SD_TRT_CATCH(whoAmI() + ": getWorkspaceSize", 0)
}

char const* SpecPoolPlugin::getMetadataString() noexcept
{
    return mMetadata.c_str();
}

int32_t SpecPoolPlugin::onShapeChange(
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
        sd_spec_pool_params p{};
        if (in == nullptr || out == nullptr || nbOutputs != 1)
        {
            logError(whoAmI() + ": onShapeChange: needs exactly 1 output");
            return -1;
        }
        if (!checkInput(in[0].dims, nbInputs, err) || !makeParams(dimOr(in[0].dims, 1), false, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        int64_t const words = sd_spec_pool_out_row_words(&p);
        if (dimOr(out[0].dims, 1) != words)
        {
            logError(whoAmI() + ": output width " + std::to_string(dimOr(out[0].dims, 1)) + " != S_out = "
                + std::to_string(words));
            return -1;
        }
        mRt = p;
        mRtReady = true;
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": onShapeChange", -1)
}

int32_t SpecPoolPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
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
        sd_status st = sd_spec_pool_workspace_size(&mRt, b, &wsBytes);
        if (st == SD_OK)
        {
            st = sd_spec_pool_forward(&mRt, b, static_cast<int32_t const*>(inputs[0]),
                static_cast<int32_t*>(outputs[0]), workspace, wsBytes, static_cast<void*>(stream));
        }
        if (st != SD_OK)
        {
            logError(whoAmI() + ": sd_spec_pool_forward: " + lastAbiError(st));
            return -1;
        }
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": enqueue", -1)
}

nvinfer1::PluginFieldCollection const* SpecPoolPlugin::getFieldsToSerialize() noexcept
{
    SD_TRT_TRY
    {
        mSerial.clear();
        mSerial.addInt("C", &mAttrs.C);
        mSerial.addInt("Hs", &mAttrs.Hs);
        mSerial.addInt("Ws", &mAttrs.Ws);
        mSerial.addInt("out_Hs", &mAttrs.outHs);
        mSerial.addInt("out_Ws", &mAttrs.outWs);
        mSerial.addInt("capacity", &mAttrs.capacity);
        mSerial.addString("value_dtype", mAttrs.valueDtypeStr);
        return mSerial.collection();
    }
    SD_TRT_CATCH(whoAmI() + ": getFieldsToSerialize", nullptr)
}

// ---------------------------------------------------------------------------------------------
// Creator

SpecPoolPluginCreator::SpecPoolPluginCreator()
{
    try
    {
        makeFieldNames(mFieldStorage, mFieldNames,
            {{"C", PluginFieldType::kINT32}, {"Hs", PluginFieldType::kINT32}, {"Ws", PluginFieldType::kINT32},
                {"out_Hs", PluginFieldType::kINT32}, {"out_Ws", PluginFieldType::kINT32},
                {"capacity", PluginFieldType::kINT32}, {"value_dtype", PluginFieldType::kCHAR}});
    }
    catch (...)
    {
        mFieldStorage.clear();
        mFieldNames = nvinfer1::PluginFieldCollection{};
        logError("SpecPool creator: could not build the field list");
    }
}

nvinfer1::PluginFieldCollection const* SpecPoolPluginCreator::getFieldNames() noexcept
{
    return &mFieldNames;
}

nvinfer1::IPluginV3* SpecPoolPluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    std::string node;
    SD_TRT_TRY
    {
        node = name != nullptr ? name : "";
        FieldReader r(SpecPoolPlugin::kNAME, node, fc);
        SpecPoolAttrs a;
        r.getInt("C", a.C);
        r.getInt("Hs", a.Hs);
        r.getInt("Ws", a.Ws);
        r.getInt("out_Hs", a.outHs);
        r.getInt("out_Ws", a.outWs);
        r.getInt("capacity", a.capacity);
        if (r.getString("value_dtype", a.valueDtypeStr))
        {
            parseValueDtype(r, a.valueDtypeStr, a.valueDtype);
        }
        if (!r.ok())
        {
            logError(r.errors());
            return nullptr;
        }
        auto plugin = std::make_unique<SpecPoolPlugin>(node, a);
        sd_spec_pool_params p{};
        std::string err;
        if (!plugin->makeParams(-1, /*allowPlaceholders=*/true, p, err))
        {
            logError(who(SpecPoolPlugin::kNAME, node) + ": " + err);
            return nullptr;
        }
        return plugin.release();
    }
    SD_TRT_CATCH(who(SpecPoolPlugin::kNAME, node) + ": createPlugin", nullptr)
}

} // namespace trt
} // namespace specdeploy
