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
#include "trt_common/trtCommon.h"

#include "spec_concat/trt/SpecConcatPlugin.h"
#include "spec_conv/trt/SpecConvPlugin.h"
#include "spec_pool/trt/SpecPoolPlugin.h"
#include "spec_to_spatial/trt/SpecToSpatialPlugin.h"

extern "C" SD_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    specdeploy::trt::setLoggerFinder(finder);
}

extern "C" SD_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
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
