/*
 * Entry points of libspecdeploy_trt.so, the dynamic plugin library that TensorRT loads with
 * IPluginRegistry::loadLibrary() (Python: trt.get_plugin_registry().load_library(path);
 * trtexec: --dynamicPlugins=path). Signatures as in TensorRT's plugin/vc/vfcCommon.h (10.x, 11.x)
 * and samples/trtexec/README.md:
 *     extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
 *     extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
 * No REGISTER_TENSORRT_PLUGIN here: registration happens only through getCreators, so loading the
 * library twice (or with dlopen + loadLibrary) never registers a creator twice.
 */
#include <cstdio>

#include "trt_common/trtCommon.h"

#include "spec_concat/trt/SpecConcatPlugin.h"
#include "spec_conv/trt/SpecConvPlugin.h"
#include "spec_pool/trt/SpecPoolPlugin.h"
#include "spec_to_spatial/trt/SpecToSpatialPlugin.h"

namespace
{
//! The TensorRT that loaded this library has the major version of the headers it was built with; else
//! logs why (to stderr: the finder of another major cannot be called) once per entry point and call.
bool runtimeCompatible(char const* entry) noexcept
{
    try
    {
        std::string why;
        if (specdeploy::trt::trtRuntimeCompatible(specdeploy::trt::runtimeInferLibVersion(), why))
        {
            return true;
        }
        std::fprintf(stderr, "[specdeploy_trt] ERROR: %s: %s\n", entry, why.c_str());
    }
    catch (...)
    {
        std::fprintf(stderr, "[specdeploy_trt] ERROR: %s: TensorRT version check failed\n", entry);
    }
    return false;
}
} // namespace

extern "C" SD_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    // A finder of another TensorRT major has another vtable layout: never keep (and so never call) it.
    if (!runtimeCompatible("setLoggerFinder"))
    {
        return;
    }
    specdeploy::trt::setLoggerFinder(finder);
}

extern "C" SD_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    if (!runtimeCompatible("getCreators"))
    {
        nbCreators = 0;
        return nullptr;
    }
    // The kernel library is a separate .so (found next to this one): one from another build may lay
    // out its parameters or size its workspace differently, so offer no plugin rather than run it.
    int32_t const abi = sd_abi_version();
    if (abi != SD_ABI_VERSION)
    {
        char msg[256];
        std::snprintf(msg, sizeof(msg),
            "libspecdeploy_trt: the kernel library implements specdeploy C ABI version %d, this plugin library "
            "was built for version %d; rebuild both from one checkout (specdeploy build-plugins --kind cuda)",
            static_cast<int>(abi), static_cast<int>(SD_ABI_VERSION));
        specdeploy::trt::log(nvinfer1::ILogger::Severity::kERROR, msg);
        nbCreators = 0;
        return nullptr;
    }
    // Function-local statics: constructed on first call, thread-safe (C++11), never throw
    // (the creators' constructors catch their own failures).
    static specdeploy::trt::SpecConvPluginCreator sConv;
    static specdeploy::trt::SpecPoolPluginCreator sPool;
    static specdeploy::trt::SpecToSpatialPluginCreator sToSpatial;
    static specdeploy::trt::SpecConcatPluginCreator sConcat;
    static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&sConv, &sPool, &sToSpatial, &sConcat};
    nbCreators = static_cast<int32_t>(sizeof(kCreators) / sizeof(kCreators[0]));
    return kCreators;
}
