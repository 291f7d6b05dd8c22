#include "SpecPoolPlugin.h"

namespace specdeploy
{
namespace trt
{

bool SpecPoolPlugin::fillParams(Tensors const& t, sd_spec_pool_params& p, std::string& err) const
{
    p.out_Hs = mAttrs.outHs;
    p.out_Ws = mAttrs.outWs;
    p.capacity = mAttrs.capacity;
    return fillInput(t, p, err);
}

sd_status SpecPoolPlugin::forward(sd_spec_pool_params const& p, int32_t batch, void const* const* inputs,
    void* const* outputs, void* workspace, size_t workspaceBytes, cudaStream_t stream) const
{
    return sd_spec_pool_forward(&p, batch, static_cast<int32_t const*>(inputs[0]), static_cast<int32_t*>(outputs[0]),
        workspace, workspaceBytes, static_cast<void*>(stream));
}

} // namespace trt
} // namespace specdeploy
