/*
 * The part of IPluginV3 + IPluginV3OneCore/OneBuild/OneRuntime that is the same for every
 * specdeploy op: capability lookup, clone, name/version/namespace, one output, attachToContext.
 * Derived (CRTP) provides `static constexpr char const* kNAME` and is copy-constructible.
 */
#ifndef SPECDEPLOY_TRT_PLUGIN_BASE_H
#define SPECDEPLOY_TRT_PLUGIN_BASE_H

#include "trtCommon.h"

#include <new>
#include <string>

namespace specdeploy
{
namespace trt
{

template <typename Derived>
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit PluginBase(std::string node)
        : mNode(std::move(node))
    {
    }
    PluginBase(PluginBase const&) = default;
    PluginBase& operator=(PluginBase const&) = delete;
    ~PluginBase() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override
    {
        switch (type)
        {
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }

    nvinfer1::IPluginV3* clone() noexcept override
    {
        SD_TRT_TRY
        {
            return new Derived(static_cast<Derived const&>(*this));
        }
        SD_TRT_CATCH(whoAmI() + ": clone", nullptr)
    }

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override
    {
        return Derived::kNAME;
    }
    char const* getPluginVersion() const noexcept override
    {
        return kPLUGIN_VERSION;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return kPLUGIN_NAMESPACE;
    }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override
    {
        return 1;
    }

    // IPluginV3OneRuntime: no per-context resources; every context gets its own copy.
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept override
    {
        return clone();
    }

protected:
    std::string whoAmI() const
    {
        return ::specdeploy::trt::who(Derived::kNAME, mNode);
    }

    //! sd_check_device() once per plugin object (build: configurePlugin, run: onShapeChange), so a kernel
    //! library without this GPU's architecture, or a too old driver, fails with the C ABI's message instead
    //! of at the first enqueue. Logs and returns false on failure.
    bool deviceOk() noexcept
    {
        if (mDeviceChecked)
        {
            return true;
        }
        sd_status const st = sd_check_device();
        if (st != SD_OK)
        {
            try
            {
                logError(whoAmI() + ": this GPU cannot run the kernel library: " + lastAbiError(st));
            }
            catch (...)
            {
                log(nvinfer1::ILogger::Severity::kERROR, "specdeploy: sd_check_device failed");
            }
            return false;
        }
        mDeviceChecked = true;
        return true;
    }

    std::string mNode;           //!< ONNX node name (the name createPlugin() got), for messages
    bool mDeviceChecked{false};  //!< sd_check_device() passed for this object
};

//! The creator side that is the same for every op. Derived provides kNAME (via Plugin), the field
//! list and createPlugin().
template <typename Plugin>
class CreatorBase : public nvinfer1::IPluginCreatorV3One
{
public:
    char const* getPluginName() const noexcept override
    {
        return Plugin::kNAME;
    }
    char const* getPluginVersion() const noexcept override
    {
        return kPLUGIN_VERSION;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return kPLUGIN_NAMESPACE;
    }
};

} // namespace trt
} // namespace specdeploy

#endif /* SPECDEPLOY_TRT_PLUGIN_BASE_H */
