#include "SpecConcatPlugin.h"

#include <algorithm>

namespace specdeploy
{
namespace trt
{

using nvinfer1::DataType;
using nvinfer1::Dims;

bool SpecConcatPlugin::checkInputCount(Stage /*stage*/, int32_t nbInputs, std::string& err) const
{
    if (nbInputs != static_cast<int32_t>(mAttrs.C.size()))
    {
        err = "has " + std::to_string(nbInputs) + " inputs but field 'C' lists " + std::to_string(mAttrs.C.size())
            + " channel counts (one per input)";
        return false;
    }
    return true;
}

bool SpecConcatPlugin::checkInputTypes(DataType const* types, int32_t nbInputs, std::string& err) const
{
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        if (types[i] != DataType::kINT32)
        {
            err = "input " + std::to_string(i) + " must be int32 (packed)";
            return false;
        }
    }
    return true;
}

bool SpecConcatPlugin::fillParams(Tensors const& t, sd_spec_concat_params& p, std::string& err) const
{
    // Input widths (-1: not known); the count equals the length of C (checkInputCount), none at creation.
    int64_t words[SD_MAX_CONCAT_INPUTS];
    std::fill(words, words + SD_MAX_CONCAT_INPUTS, int64_t{-1});
    int64_t const batch = t.stage == Stage::kRUNTIME && t.nbInputs > 0 ? dimOr(t.dimsOf(0), 0) : -1;
    for (int32_t i = 0; i < t.nbInputs && i < SD_MAX_CONCAT_INPUTS; ++i)
    {
        Dims const& d = t.dimsOf(i);
        if (t.stage == Stage::kSHAPES && d.nbDims != 2)
        {
            err = "input " + std::to_string(i) + " must be packed int32 [B, S_i], got rank " + std::to_string(d.nbDims);
            return false;
        }
        if (t.stage == Stage::kRUNTIME && (d.nbDims != 2 || dimOr(d, 0) != batch))
        {
            err = "input " + std::to_string(i) + " must be packed [B, S_i] with the batch B = " + std::to_string(batch)
                + " of input 0";
            return false;
        }
        words[i] = dimOr(d, 1);
    }

    SpecConcatAttrs const& a = mAttrs;
    int32_t const n = static_cast<int32_t>(a.C.size());
    if (n < 1 || n > SD_MAX_CONCAT_INPUTS)
    {
        err = "field 'C' has " + std::to_string(n) + " entries: must list 1.." + std::to_string(SD_MAX_CONCAT_INPUTS)
            + " channel counts, one per input";
        return false;
    }
    int32_t const F = numCoeffs(a.Hs, a.Ws);
    p.n_inputs = n;
    p.Hs = a.Hs;
    p.Ws = a.Ws;
    p.capacity = a.capacity;
    p.value_dtype = a.valueDtype;
    for (int32_t i = 0; i < n; ++i)
    {
        p.C[i] = a.C[static_cast<size_t>(i)];
        if (!rowWordsOr(words[i], t.placeholders(), p.C[i], F, a.valueDtype, p.in_row_words[i]))
        {
            err = "the packed width S_" + std::to_string(i) + " of input " + std::to_string(i) + " must be static";
            return false;
        }
    }
    return true;
}

sd_status SpecConcatPlugin::forward(sd_spec_concat_params const& p, int32_t batch, void const* const* inputs,
    void* const* outputs, void* workspace, size_t workspaceBytes, cudaStream_t stream) const
{
    int32_t const* xs[SD_MAX_CONCAT_INPUTS];
    for (int32_t i = 0; i < p.n_inputs; ++i)
    {
        xs[i] = static_cast<int32_t const*>(inputs[i]);
    }
    return sd_spec_concat_forward(
        &p, batch, xs, static_cast<int32_t*>(outputs[0]), workspace, workspaceBytes, static_cast<void*>(stream));
}

} // namespace trt
} // namespace specdeploy
