#include "SpecConcatPlugin.h"

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

SpecConcatPlugin::SpecConcatPlugin(std::string node, SpecConcatAttrs attrs)
    : PluginBase<SpecConcatPlugin>(std::move(node))
    , mAttrs(std::move(attrs))
{
    std::ostringstream os;
    os << kNAME << " C=[";
    for (size_t i = 0; i < mAttrs.C.size(); ++i)
    {
        os << (i ? "," : "") << mAttrs.C[i];
    }
    os << "] Hs=" << mAttrs.Hs << " Ws=" << mAttrs.Ws << " capacity=" << mAttrs.capacity
       << " value_dtype=" << mAttrs.valueDtypeStr;
    mMetadata = os.str();
}

bool SpecConcatPlugin::makeParams(
    int64_t const* inWords, bool allowPlaceholders, sd_spec_concat_params& p, std::string& err) const
{
    SpecConcatAttrs const& a = mAttrs;
    int32_t const n = static_cast<int32_t>(a.C.size());
    if (n < 1 || n > SD_MAX_CONCAT_INPUTS)
    {
        err = "field 'C' has " + std::to_string(n) + " entries: must list 1.." + std::to_string(SD_MAX_CONCAT_INPUTS)
            + " channel counts, one per input";
        return false;
    }
    int32_t const F = numCoeffs(a.Hs, a.Ws);
    p = sd_spec_concat_params{};
    p.n_inputs = n;
    p.Hs = a.Hs;
    p.Ws = a.Ws;
    p.capacity = a.capacity;
    p.value_dtype = a.valueDtype;
    for (int32_t i = 0; i < n; ++i)
    {
        p.C[i] = a.C[static_cast<size_t>(i)];
        int64_t const w = inWords != nullptr ? inWords[i] : -1;
        if (w >= 0)
        {
            p.in_row_words[i] = w;
        }
        else if (allowPlaceholders)
        {
            p.in_row_words[i] = sd_packed_row_words(p.C[i], F, 1, a.valueDtype);
        }
        else
        {
            err = "the packed width S_" + std::to_string(i) + " of input " + std::to_string(i) + " must be static";
            return false;
        }
    }
    sd_status const st = sd_spec_concat_validate(&p);
    if (st != SD_OK)
    {
        err = lastAbiError(st);
        return false;
    }
    return true;
}

bool SpecConcatPlugin::checkInputs(int32_t nbInputs, std::string& err) const
{
    if (nbInputs != static_cast<int32_t>(mAttrs.C.size()))
    {
        err = "has " + std::to_string(nbInputs) + " inputs but field 'C' lists " + std::to_string(mAttrs.C.size())
            + " channel counts (one per input)";
        return false;
    }
    return true;
}

int32_t SpecConcatPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    SD_TRT_TRY
    {
        std::string err;
        if (outputTypes == nullptr || nbOutputs != 1 || !checkInputs(nbInputs, err))
        {
            logError(whoAmI() + ": getOutputDataTypes: " + (err.empty() ? "needs exactly 1 output" : err));
            return -1;
        }
        for (int32_t i = 0; inputTypes != nullptr && i < nbInputs; ++i)
        {
            if (inputTypes[i] != DataType::kINT32)
            {
                logError(whoAmI() + ": input " + std::to_string(i) + " must be int32 (packed)");
                return -1;
            }
        }
        outputTypes[0] = DataType::kINT32;
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": getOutputDataTypes", -1)
}

int32_t SpecConcatPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    SD_TRT_TRY
    {
        std::string err;
        if (inputs == nullptr || outputs == nullptr || nbOutputs != 1 || !checkInputs(nbInputs, err))
        {
            logError(whoAmI() + ": getOutputShapes: " + (err.empty() ? "needs exactly 1 output" : err));
            return -1;
        }
        int64_t words[SD_MAX_CONCAT_INPUTS];
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            if (inputs[i].nbDims != 2)
            {
                logError(whoAmI() + ": input " + std::to_string(i) + " must be packed int32 [B, S_i], got rank "
                    + std::to_string(inputs[i].nbDims));
                return -1;
            }
            words[i] = constantOr(inputs[i].d[1]);
        }
        sd_spec_concat_params p{};
        if (!makeParams(words, true, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        int64_t const outWords = sd_spec_concat_out_row_words(&p);
        if (outWords <= 0)
        {
            logError(whoAmI() + ": sd_spec_concat_out_row_words failed: " + lastAbiError(SD_ERR_INVALID_ARGUMENT));
            return -1;
        }
        outputs[0].nbDims = 2;
        outputs[0].d[0] = inputs[0].d[0];
        outputs[0].d[1] = exprBuilder.constant(outWords);
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": getOutputShapes", -1)
}

bool SpecConcatPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& d = inOut[pos].desc;
    return d.format == TensorFormat::kLINEAR && d.type == DataType::kINT32;
}

int32_t SpecConcatPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    SD_TRT_TRY
    {
        if (!deviceOk())
        {
            return -1;
        }
        std::string err;
        if (in == nullptr || out == nullptr || nbOutputs != 1 || !checkInputs(nbInputs, err))
        {
            logError(whoAmI() + ": configurePlugin: " + (err.empty() ? "needs exactly 1 output" : err));
            return -1;
        }
        int64_t words[SD_MAX_CONCAT_INPUTS];
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            words[i] = dimOr(knownDims(in[i]), 1);
        }
        sd_spec_concat_params p{};
        if (!makeParams(words, false, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        int64_t const expect = sd_spec_concat_out_row_words(&p);
        int64_t const outWords = dimOr(knownDims(out[0]), 1);
        if (outWords >= 0 && outWords != expect)
        {
            logError(whoAmI() + ": output width " + std::to_string(outWords) + " != S_out = " + std::to_string(expect));
            return -1;
        }
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": configurePlugin", -1)
}

size_t SpecConcatPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    SD_TRT_TRY
    {
        std::string err;
        if (inputs == nullptr || !checkInputs(nbInputs, err))
        {
            logError(whoAmI() + ": getWorkspaceSize: " + err);
            return 0;
        }
        int64_t words[SD_MAX_CONCAT_INPUTS];
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            words[i] = dimOr(inputs[i].max, 1);
        }
        sd_spec_concat_params p{};
        if (!makeParams(words, false, p, err))
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
        sd_status const st = sd_spec_concat_workspace_size(&p, static_cast<int32_t>(maxBatch), &bytes);
        if (st != SD_OK)
        {
            logError(whoAmI() + ": sd_spec_concat_workspace_size: " + lastAbiError(st));
            return 0;
        }
        return bytes;
    }
    SD_TRT_CATCH(whoAmI() + ": getWorkspaceSize", 0)
}

char const* SpecConcatPlugin::getMetadataString() noexcept
{
    return mMetadata.c_str();
}

int32_t SpecConcatPlugin::onShapeChange(
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
        if (in == nullptr || out == nullptr || nbOutputs != 1 || !checkInputs(nbInputs, err))
        {
            logError(whoAmI() + ": onShapeChange: " + (err.empty() ? "needs exactly 1 output" : err));
            return -1;
        }
        int64_t words[SD_MAX_CONCAT_INPUTS];
        int64_t const batch = dimOr(in[0].dims, 0);
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            if (in[i].dims.nbDims != 2 || dimOr(in[i].dims, 0) != batch)
            {
                logError(whoAmI() + ": input " + std::to_string(i) + " must be packed [B, S_i] with the batch B = "
                    + std::to_string(batch) + " of input 0");
                return -1;
            }
            words[i] = dimOr(in[i].dims, 1);
        }
        sd_spec_concat_params p{};
        if (!makeParams(words, false, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        int64_t const expect = sd_spec_concat_out_row_words(&p);
        if (dimOr(out[0].dims, 1) != expect)
        {
            logError(whoAmI() + ": output width " + std::to_string(dimOr(out[0].dims, 1)) + " != S_out = "
                + std::to_string(expect));
            return -1;
        }
        mRt = p;
        mRtReady = true;
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": onShapeChange", -1)
}

int32_t SpecConcatPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
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
        int32_t const* xs[SD_MAX_CONCAT_INPUTS];
        for (int32_t i = 0; i < mRt.n_inputs; ++i)
        {
            xs[i] = static_cast<int32_t const*>(inputs[i]);
        }
        int32_t const b = static_cast<int32_t>(batch);
        size_t wsBytes{0};
        sd_status st = sd_spec_concat_workspace_size(&mRt, b, &wsBytes);
        if (st == SD_OK)
        {
            st = sd_spec_concat_forward(
                &mRt, b, xs, static_cast<int32_t*>(outputs[0]), workspace, wsBytes, static_cast<void*>(stream));
        }
        if (st != SD_OK)
        {
            logError(whoAmI() + ": sd_spec_concat_forward: " + lastAbiError(st));
            return -1;
        }
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": enqueue", -1)
}

nvinfer1::PluginFieldCollection const* SpecConcatPlugin::getFieldsToSerialize() noexcept
{
    SD_TRT_TRY
    {
        mSerial.clear();
        mSerial.addInts("C", mAttrs.C);
        mSerial.addInt("Hs", &mAttrs.Hs);
        mSerial.addInt("Ws", &mAttrs.Ws);
        mSerial.addInt("capacity", &mAttrs.capacity);
        mSerial.addString("value_dtype", mAttrs.valueDtypeStr);
        return mSerial.collection();
    }
    SD_TRT_CATCH(whoAmI() + ": getFieldsToSerialize", nullptr)
}

// ---------------------------------------------------------------------------------------------
// Creator

SpecConcatPluginCreator::SpecConcatPluginCreator()
{
    try
    {
        makeFieldNames(mFieldStorage, mFieldNames,
            {{"C", PluginFieldType::kINT32}, {"Hs", PluginFieldType::kINT32}, {"Ws", PluginFieldType::kINT32},
                {"capacity", PluginFieldType::kINT32}, {"value_dtype", PluginFieldType::kCHAR}});
    }
    catch (...)
    {
        mFieldStorage.clear();
        mFieldNames = nvinfer1::PluginFieldCollection{};
        logError("SpecConcat creator: could not build the field list");
    }
}

nvinfer1::PluginFieldCollection const* SpecConcatPluginCreator::getFieldNames() noexcept
{
    return &mFieldNames;
}

nvinfer1::IPluginV3* SpecConcatPluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    std::string node;
    SD_TRT_TRY
    {
        node = name != nullptr ? name : "";
        FieldReader r(SpecConcatPlugin::kNAME, node, fc);
        SpecConcatAttrs a;
        r.getInts("C", a.C);
        r.getInt("Hs", a.Hs);
        r.getInt("Ws", a.Ws);
        r.getInt("capacity", a.capacity);
        if (r.getString("value_dtype", a.valueDtypeStr))
        {
            parseValueDtype(r, a.valueDtypeStr, a.valueDtype);
        }
        if (r.ok() && (a.C.empty() || a.C.size() > static_cast<size_t>(SD_MAX_CONCAT_INPUTS)))
        {
            r.fail("C", "has " + std::to_string(a.C.size()) + " entries: must list 1.."
                    + std::to_string(SD_MAX_CONCAT_INPUTS) + " channel counts, one per input");
        }
        if (!r.ok())
        {
            logError(r.errors());
            return nullptr;
        }
        auto plugin = std::make_unique<SpecConcatPlugin>(node, a);
        sd_spec_concat_params p{};
        std::string err;
        if (!plugin->makeParams(nullptr, /*allowPlaceholders=*/true, p, err))
        {
            logError(who(SpecConcatPlugin::kNAME, node) + ": " + err);
            return nullptr;
        }
        return plugin.release();
    }
    SD_TRT_CATCH(who(SpecConcatPlugin::kNAME, node) + ": createPlugin", nullptr)
}

} // namespace trt
} // namespace specdeploy
