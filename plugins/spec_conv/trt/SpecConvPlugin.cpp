#include "SpecConvPlugin.h"

namespace specdeploy
{
namespace trt
{

using nvinfer1::DataType;
using nvinfer1::Dims;

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

bool SpecConvPlugin::shapesFrom(Tensors const& t, SpecConvShapes& s, std::string& err) const
{
    if (!checkNbInputs(t.nbInputs, err))
    {
        return false;
    }
    s = SpecConvShapes{};
    s.hasBias = t.nbInputs == 3;

    Dims const& x = t.dimsOf(0);
    if (mAttrs.inDomain == SD_DOMAIN_SPATIAL)
    {
        if (x.nbDims != 4)
        {
            err = "input X must be [B, C, H, W] for in_domain 'spatial', got rank " + std::to_string(x.nbDims);
            return false;
        }
        if (t.desc != nullptr)
        {
            s.xType = floatTypeOf(t.desc[0].type);
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
        if (t.desc != nullptr && t.desc[0].type != DataType::kINT32)
        {
            err = "input X must be int32 (packed) for in_domain 'spectral'";
            return false;
        }
        s.inWords = dimOr(x, 1);
    }

    Dims const& w = t.dimsOf(1);
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
        Dims const& b = t.dimsOf(2);
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

bool SpecConvPlugin::fillParams(Tensors const& t, sd_spec_conv_params& p, std::string& err) const
{
    SpecConvShapes s; // createPlugin: nothing known
    if (t.stage != Stage::kCREATE && !shapesFrom(t, s, err))
    {
        return false;
    }
    if (t.stage == Stage::kSHAPES && s.O < 0)
    {
        err = "the number of output channels O (W.shape[0]) must be a build-time constant: export W as an "
              "initializer";
        return false;
    }
    // getOutputShapes: H, W and S_in may still be unknown (checked again in configurePlugin); O is what
    // S_out needs.
    bool const allowPlaceholders = t.placeholders();
    SpecConvAttrs const& a = mAttrs;
    int32_t const F = numCoeffs(a.Hs, a.Ws);
    p.in_domain = a.inDomain;
    p.C = a.C;
    p.Hs = a.Hs;
    p.Ws = a.Ws;
    p.k = a.k;
    p.beta = a.beta;
    p.activation = a.activation;
    p.pool = a.pool;
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
        // Smallest O for which `capacity` is in range: the creation-time check cannot know O. The output has
        // F coefficients per channel, or those of ceil(Hs/2) x ceil(Ws/2) with a pool.
        int32_t const oF = a.pool != SD_POOL_NONE ? numCoeffs((a.Hs + 1) / 2, (a.Ws + 1) / 2) : F;
        p.O = (oF > 0 && a.capacity > 0) ? static_cast<int32_t>((static_cast<int64_t>(a.capacity) + oF - 1) / oF) : 1;
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
        if (!rowWordsOr(s.inWords, allowPlaceholders, a.C, F, a.valueDtype, p.in_row_words))
        {
            err = "the packed width S_in of input X must be static";
            return false;
        }
    }
    return true;
}

bool SpecConvPlugin::checkInputCount(Stage stage, int32_t nbInputs, std::string& err) const
{
    return stage == Stage::kRUNTIME || checkNbInputs(nbInputs, err);
}

bool SpecConvPlugin::checkInputTypes(DataType const* types, int32_t /*nbInputs*/, std::string& err) const
{
    bool const spatial = mAttrs.inDomain == SD_DOMAIN_SPATIAL;
    if (spatial && floatTypeOf(types[0]) < 0)
    {
        err = "input X must be float32 or float16 for in_domain 'spatial'";
        return false;
    }
    if (!spatial && types[0] != DataType::kINT32)
    {
        err = "input X must be int32 (packed) for in_domain 'spectral'";
        return false;
    }
    return true;
}

bool SpecConvPlugin::supportsType(int32_t pos, DataType type, int32_t nbInputs) const noexcept
{
    if (pos == 0)
    {
        return mAttrs.inDomain == SD_DOMAIN_SPATIAL ? (type == DataType::kFLOAT || type == DataType::kHALF)
                                                     : type == DataType::kINT32;
    }
    if (pos < nbInputs)
    {
        return type == DataType::kFLOAT; // W, B
    }
    return type == DataType::kINT32; // packed output
}

sd_status SpecConvPlugin::forward(sd_spec_conv_params const& p, int32_t batch, void const* const* inputs,
    void* const* outputs, void* workspace, size_t workspaceBytes, cudaStream_t stream) const
{
    float const* bias = p.has_bias != 0 ? static_cast<float const*>(inputs[2]) : nullptr;
    return sd_spec_conv_forward(&p, batch, inputs[0], static_cast<float const*>(inputs[1]), bias,
        static_cast<int32_t*>(outputs[0]), workspace, workspaceBytes, static_cast<void*>(stream));
}

} // namespace trt
} // namespace specdeploy
