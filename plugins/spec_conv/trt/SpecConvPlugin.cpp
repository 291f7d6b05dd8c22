#include "SpecConvPlugin.h"

#include <limits>
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

SpecConvPlugin::SpecConvPlugin(std::string node, SpecConvAttrs attrs)
    : PluginBase<SpecConvPlugin>(std::move(node))
    , mAttrs(std::move(attrs))
{
    std::ostringstream os;
    os << kNAME << " in_domain=" << mAttrs.inDomainStr << " C=" << mAttrs.C << " Hs=" << mAttrs.Hs
       << " Ws=" << mAttrs.Ws << " k=" << mAttrs.k << " beta=" << mAttrs.beta << " activation=" << mAttrs.activationStr
       << " capacity=" << mAttrs.capacity << " value_dtype=" << mAttrs.valueDtypeStr;
    mMetadata = os.str();
}

bool SpecConvPlugin::checkNbInputs(int32_t nbInputs, std::string& err) const
{
    if (nbInputs != 2 && nbInputs != 3)
    {
        err = "needs 2 inputs (X, W) or 3 (X, W, B), got " + std::to_string(nbInputs)
            + " (an absent optional bias must be left out of the node's inputs, not given as '')";
        return false;
    }
    return true;
}

bool SpecConvPlugin::shapesFrom(PluginTensorDesc const* in, int32_t nbInputs, Dims const* dimsOverride,
    SpecConvShapes& s, std::string& err) const
{
    if (!checkNbInputs(nbInputs, err))
    {
        return false;
    }
    auto dimsOf = [&](int32_t i) -> Dims const& { return dimsOverride != nullptr ? dimsOverride[i] : in[i].dims; };
    s = SpecConvShapes{};
    s.hasBias = nbInputs == 3;

    Dims const& x = dimsOf(0);
    if (mAttrs.inDomain == SD_DOMAIN_SPATIAL)
    {
        if (x.nbDims != 4)
        {
            err = "input X must be [B, C, H, W] for in_domain 'spatial', got rank " + std::to_string(x.nbDims);
            return false;
        }
        if (in != nullptr)
        {
            s.xType = floatTypeOf(in[0].type);
            if (s.xType < 0)
            {
                err = "input X must be float32 or float16 for in_domain 'spatial'";
                return false;
            }
        }
        int64_t const c = dimOr(x, 1);
        if (c >= 0 && c != mAttrs.C)
        {
            err = "input X has " + std::to_string(c) + " channels but attribute C = " + std::to_string(mAttrs.C);
            return false;
        }
        s.H = dimOr(x, 2);
        s.W = dimOr(x, 3);
    }
    else
    {
        if (x.nbDims != 2)
        {
            err = "input X must be packed int32 [B, S_in] for in_domain 'spectral', got rank "
                + std::to_string(x.nbDims);
            return false;
        }
        if (in != nullptr && in[0].type != DataType::kINT32)
        {
            err = "input X must be int32 (packed) for in_domain 'spectral'";
            return false;
        }
        s.inWords = dimOr(x, 1);
    }

    Dims const& w = dimsOf(1);
    if (w.nbDims != 4)
    {
        err = "input W must be [O, C, k, k], got rank " + std::to_string(w.nbDims);
        return false;
    }
    s.O = dimOr(w, 0);
    int64_t const wc = dimOr(w, 1);
    int64_t const wk0 = dimOr(w, 2);
    int64_t const wk1 = dimOr(w, 3);
    if ((wc >= 0 && wc != mAttrs.C) || (wk0 >= 0 && wk0 != mAttrs.k) || (wk1 >= 0 && wk1 != mAttrs.k))
    {
        err = "input W must be [O, C=" + std::to_string(mAttrs.C) + ", k=" + std::to_string(mAttrs.k)
            + ", k=" + std::to_string(mAttrs.k) + "], got [" + std::to_string(dimOr(w, 0)) + ", " + std::to_string(wc)
            + ", " + std::to_string(wk0) + ", " + std::to_string(wk1) + "]";
        return false;
    }
    if (s.hasBias)
    {
        Dims const& b = dimsOf(2);
        int64_t const bo = dimOr(b, 0);
        if (b.nbDims != 1 || (bo >= 0 && s.O >= 0 && bo != s.O))
        {
            err = "input B must be [O] = [" + std::to_string(s.O) + "], got rank " + std::to_string(b.nbDims)
                + " with first dim " + std::to_string(bo);
            return false;
        }
    }
    return true;
}

bool SpecConvPlugin::makeParams(
    SpecConvShapes const& s, bool allowPlaceholders, sd_spec_conv_params& p, std::string& err) const
{
    SpecConvAttrs const& a = mAttrs;
    int32_t const F = numCoeffs(a.Hs, a.Ws);
    p = sd_spec_conv_params{};
    p.in_domain = a.inDomain;
    p.C = a.C;
    p.Hs = a.Hs;
    p.Ws = a.Ws;
    p.k = a.k;
    p.beta = a.beta;
    p.activation = a.activation;
    p.capacity = a.capacity;
    p.value_dtype = a.valueDtype;
    p.x_type = s.xType;
    p.has_bias = s.hasBias ? 1 : 0;

    if (s.O >= 0)
    {
        if (!fitsInt32(s.O))
        {
            err = "W.shape[0] (O) = " + std::to_string(s.O) + " does not fit int32";
            return false;
        }
        p.O = static_cast<int32_t>(s.O);
    }
    else if (allowPlaceholders)
    {
        // Smallest O for which `capacity` is in range: the creation-time check cannot know O.
        p.O = (F > 0 && a.capacity > 0) ? static_cast<int32_t>((static_cast<int64_t>(a.capacity) + F - 1) / F) : 1;
    }
    else
    {
        err = "the number of output channels O (W.shape[0]) must be known at build time: export W as an initializer";
        return false;
    }

    if (a.inDomain == SD_DOMAIN_SPATIAL)
    {
        if (a.k >= 1 && a.Hs >= 1 && a.Ws >= 1 && (a.Hs < a.k || a.Ws < a.k))
        {
            err = "attributes Hs = " + std::to_string(a.Hs) + ", Ws = " + std::to_string(a.Ws)
                + " must be >= k = " + std::to_string(a.k) + " for in_domain 'spatial' (Hs = H + k - 1, H >= 1)";
            return false;
        }
        if (s.H >= 0 && s.W >= 0)
        {
            if (!fitsInt32(s.H) || !fitsInt32(s.W) || s.H + a.k - 1 != a.Hs || s.W + a.k - 1 != a.Ws)
            {
                err = "input X is H x W = " + std::to_string(s.H) + " x " + std::to_string(s.W)
                    + ", so attributes Hs, Ws must be H + k - 1, W + k - 1 = " + std::to_string(s.H + a.k - 1) + ", "
                    + std::to_string(s.W + a.k - 1) + ", got Hs = " + std::to_string(a.Hs)
                    + ", Ws = " + std::to_string(a.Ws);
                return false;
            }
            p.H = static_cast<int32_t>(s.H);
            p.W = static_cast<int32_t>(s.W);
        }
        else if (allowPlaceholders)
        {
            p.H = a.Hs - a.k + 1;
            p.W = a.Ws - a.k + 1;
        }
        else
        {
            err = "the spatial size H x W of input X must be static (only the batch dimension may vary)";
            return false;
        }
    }
    else
    {
        p.H = 0;
        p.W = 0;
        if (s.inWords >= 0)
        {
            p.in_row_words = s.inWords;
        }
        else if (allowPlaceholders)
        {
            // A valid row size for (C, F, value_dtype): that of an input with capacity 1.
            p.in_row_words = sd_packed_row_words(a.C, F, 1, a.valueDtype);
        }
        else
        {
            err = "the packed width S_in of input X must be static";
            return false;
        }
    }

    sd_status const st = sd_spec_conv_validate(&p);
    if (st != SD_OK)
    {
        err = lastAbiError(st);
        return false;
    }
    return true;
}

int32_t SpecConvPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    SD_TRT_TRY
    {
        std::string err;
        if (outputTypes == nullptr || nbOutputs != 1 || !checkNbInputs(nbInputs, err))
        {
            logError(whoAmI() + ": getOutputDataTypes: " + (err.empty() ? "needs exactly 1 output" : err));
            return -1;
        }
        if (inputTypes != nullptr)
        {
            bool const spatial = mAttrs.inDomain == SD_DOMAIN_SPATIAL;
            if (spatial && floatTypeOf(inputTypes[0]) < 0)
            {
                logError(whoAmI() + ": input X must be float32 or float16 for in_domain 'spatial'");
                return -1;
            }
            if (!spatial && inputTypes[0] != DataType::kINT32)
            {
                logError(whoAmI() + ": input X must be int32 (packed) for in_domain 'spectral'");
                return -1;
            }
        }
        outputTypes[0] = DataType::kINT32;
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": getOutputDataTypes", -1)
}

int32_t SpecConvPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    SD_TRT_TRY
    {
        std::string err;
        if (inputs == nullptr || outputs == nullptr || nbOutputs != 1 || !checkNbInputs(nbInputs, err))
        {
            logError(whoAmI() + ": getOutputShapes: " + (err.empty() ? "needs exactly 1 output" : err));
            return -1;
        }
        Dims dims[3]{};
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            dims[i].nbDims = inputs[i].nbDims;
            for (int32_t j = 0; j < inputs[i].nbDims && j < Dims::MAX_DIMS; ++j)
            {
                dims[i].d[j] = constantOr(inputs[i].d[j]);
            }
        }
        SpecConvShapes s;
        sd_spec_conv_params p{};
        if (!shapesFrom(nullptr, nbInputs, dims, s, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        if (s.O < 0)
        {
            logError(whoAmI()
                + ": the number of output channels O (W.shape[0]) must be a build-time constant: export W as an "
                  "initializer");
            return -1;
        }
        // H, W and S_in may still be unknown here (checked again in configurePlugin); O is what S_out needs.
        if (!makeParams(s, /*allowPlaceholders=*/true, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        int64_t const words = sd_spec_conv_out_row_words(&p);
        if (words <= 0)
        {
            logError(whoAmI() + ": sd_spec_conv_out_row_words failed: " + lastAbiError(SD_ERR_INVALID_ARGUMENT));
            return -1;
        }
        outputs[0].nbDims = 2;
        outputs[0].d[0] = inputs[0].d[0];
        outputs[0].d[1] = exprBuilder.constant(words);
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": getOutputShapes", -1)
}

bool SpecConvPlugin::supportsFormatCombination(
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
    if (pos == 0)
    {
        return mAttrs.inDomain == SD_DOMAIN_SPATIAL ? (d.type == DataType::kFLOAT || d.type == DataType::kHALF)
                                                     : d.type == DataType::kINT32;
    }
    if (pos < nbInputs)
    {
        return d.type == DataType::kFLOAT; // W, B
    }
    return d.type == DataType::kINT32; // packed output
}

int32_t SpecConvPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    SD_TRT_TRY
    {
        if (!deviceOk())
        {
            return -1;
        }
        std::string err;
        if (in == nullptr || out == nullptr || nbOutputs != 1 || !checkNbInputs(nbInputs, err))
        {
            logError(whoAmI() + ": configurePlugin: " + (err.empty() ? "needs exactly 1 output" : err));
            return -1;
        }
        PluginTensorDesc descs[3];
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            descs[i] = in[i].desc;
            descs[i].dims = knownDims(in[i]);
        }
        SpecConvShapes s;
        sd_spec_conv_params p{};
        if (!shapesFrom(descs, nbInputs, nullptr, s, err) || !makeParams(s, false, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        int64_t const words = sd_spec_conv_out_row_words(&p);
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

size_t SpecConvPlugin::getWorkspaceSize(
    DynamicPluginTensorDesc const* inputs, int32_t nbInputs, DynamicPluginTensorDesc const* /*outputs*/,
    int32_t /*nbOutputs*/) const noexcept
{
    SD_TRT_TRY
    {
        std::string err;
        if (inputs == nullptr || !checkNbInputs(nbInputs, err))
        {
            logError(whoAmI() + ": getWorkspaceSize: " + err);
            return 0;
        }
        PluginTensorDesc descs[3];
        Dims maxDims[3];
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            descs[i] = inputs[i].desc;
            maxDims[i] = inputs[i].max;
        }
        SpecConvShapes s;
        sd_spec_conv_params p{};
        if (!shapesFrom(descs, nbInputs, maxDims, s, err) || !makeParams(s, false, p, err))
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
        sd_status const st = sd_spec_conv_workspace_size(&p, static_cast<int32_t>(maxBatch), &bytes);
        if (st != SD_OK)
        {
            logError(whoAmI() + ": sd_spec_conv_workspace_size: " + lastAbiError(st));
            return 0;
        }
        return bytes;
    }
    SD_TRT_CATCH(whoAmI() + ": getWorkspaceSize", 0)
}

char const* SpecConvPlugin::getMetadataString() noexcept
{
    return mMetadata.c_str();
}

int32_t SpecConvPlugin::onShapeChange(
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
        SpecConvShapes s;
        sd_spec_conv_params p{};
        if (in == nullptr || out == nullptr || nbOutputs != 1)
        {
            logError(whoAmI() + ": onShapeChange: needs exactly 1 output");
            return -1;
        }
        if (!shapesFrom(in, nbInputs, nullptr, s, err) || !makeParams(s, false, p, err))
        {
            logError(whoAmI() + ": " + err);
            return -1;
        }
        int64_t const words = sd_spec_conv_out_row_words(&p);
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

int32_t SpecConvPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
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
        sd_status st = sd_spec_conv_workspace_size(&mRt, b, &wsBytes);
        if (st == SD_OK)
        {
            float const* bias = mRt.has_bias != 0 ? static_cast<float const*>(inputs[2]) : nullptr;
            st = sd_spec_conv_forward(&mRt, b, inputs[0], static_cast<float const*>(inputs[1]), bias,
                static_cast<int32_t*>(outputs[0]), workspace, wsBytes, static_cast<void*>(stream));
        }
        if (st != SD_OK)
        {
            logError(whoAmI() + ": sd_spec_conv_forward: " + lastAbiError(st));
            return -1;
        }
        return 0;
    }
    SD_TRT_CATCH(whoAmI() + ": enqueue", -1)
}

nvinfer1::PluginFieldCollection const* SpecConvPlugin::getFieldsToSerialize() noexcept
{
    SD_TRT_TRY
    {
        mSerial.clear();
        mSerial.addString("in_domain", mAttrs.inDomainStr);
        mSerial.addInt("C", &mAttrs.C);
        mSerial.addInt("Hs", &mAttrs.Hs);
        mSerial.addInt("Ws", &mAttrs.Ws);
        mSerial.addInt("k", &mAttrs.k);
        mSerial.addFloat("beta", &mAttrs.beta);
        mSerial.addString("activation", mAttrs.activationStr);
        mSerial.addInt("capacity", &mAttrs.capacity);
        mSerial.addString("value_dtype", mAttrs.valueDtypeStr);
        return mSerial.collection();
    }
    SD_TRT_CATCH(whoAmI() + ": getFieldsToSerialize", nullptr)
}

// ---------------------------------------------------------------------------------------------
// Creator

SpecConvPluginCreator::SpecConvPluginCreator()
{
    try
    {
        makeFieldNames(mFieldStorage, mFieldNames,
            {{"in_domain", PluginFieldType::kCHAR}, {"C", PluginFieldType::kINT32}, {"Hs", PluginFieldType::kINT32},
                {"Ws", PluginFieldType::kINT32}, {"k", PluginFieldType::kINT32}, {"beta", PluginFieldType::kFLOAT32},
                {"activation", PluginFieldType::kCHAR}, {"capacity", PluginFieldType::kINT32},
                {"value_dtype", PluginFieldType::kCHAR}});
    }
    catch (...)
    {
        mFieldStorage.clear();
        mFieldNames = nvinfer1::PluginFieldCollection{};
        logError("SpecConv creator: could not build the field list");
    }
}

nvinfer1::PluginFieldCollection const* SpecConvPluginCreator::getFieldNames() noexcept
{
    return &mFieldNames;
}

nvinfer1::IPluginV3* SpecConvPluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    std::string node;
    SD_TRT_TRY
    {
        node = name != nullptr ? name : "";
        FieldReader r(SpecConvPlugin::kNAME, node, fc);
        SpecConvAttrs a;
        if (r.getString("in_domain", a.inDomainStr))
        {
            parseDomain(r, a.inDomainStr, a.inDomain);
        }
        r.getInt("C", a.C);
        r.getInt("Hs", a.Hs);
        r.getInt("Ws", a.Ws);
        r.getInt("k", a.k);
        r.getFloat("beta", a.beta);
        if (r.getString("activation", a.activationStr))
        {
            parseActivation(r, a.activationStr, a.activation);
        }
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
        auto plugin = std::make_unique<SpecConvPlugin>(node, a);
        SpecConvShapes unknown;
        sd_spec_conv_params p{};
        std::string err;
        if (!plugin->makeParams(unknown, /*allowPlaceholders=*/true, p, err))
        {
            logError(who(SpecConvPlugin::kNAME, node) + ": " + err);
            return nullptr;
        }
        return plugin.release();
    }
    SD_TRT_CATCH(who(SpecConvPlugin::kNAME, node) + ": createPlugin", nullptr)
}

} // namespace trt
} // namespace specdeploy
