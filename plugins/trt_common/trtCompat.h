/*
 * TensorRT version differences that the specdeploy plugins care about, in one place.
 *
 * Checked against the public headers of TensorRT 10.3 (JetPack 6.1+; 6.0 has 8.6), 10.13 and 11.0 / 11.1
 * (plugins/tools/check_trt_headers.sh). What differs between them, for this code:
 *  - 10.3 declares IPluginV3, IPluginCapability, PluginField(Collection), TensorRTPhase in
 *    NvInferRuntime.h / NvInferRuntimePlugin.h; 10.4+ moved them to NvInferPluginBase.h, which
 *    NvInferRuntime.h includes. Include NvInferRuntime.h only and both work.
 *  - ILoggerFinder is a plain abstract class in 10.x and an IVersionedInterface in 11.x; only
 *    findLogger() is used here, which is identical.
 *  - IPluginResourceContext's destructor became pure (with a definition) in 11.x: irrelevant
 *    to plugins, which never destroy it.
 *  - NV_TENSORRT_MAJOR/MINOR are plain numbers in 10.3 and aliases of TRT_*_ENTERPRISE in 10.13+;
 *    both work in #if.
 *  - Builder side (not plugin side): 11.x removed BuilderFlag::kFP16 and weakly typed networks,
 *    and ICudaEngine::getDeviceMemorySize (v1). That lives in specdeploy/trt/compat.py.
 * IPluginV3OneCore/OneBuild/OneRuntime and IPluginCreatorV3One have the same virtual methods in
 * all of them, so the plugin classes need no #if.
 */
#ifndef SPECDEPLOY_TRT_COMPAT_H
#define SPECDEPLOY_TRT_COMPAT_H

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#define SD_TRT_VERSION_CODE(major, minor) ((major) * 100 + (minor))
#define SD_TRT_VERSION SD_TRT_VERSION_CODE(NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR)
#define SD_TRT_AT_LEAST(major, minor) (SD_TRT_VERSION >= SD_TRT_VERSION_CODE(major, minor))

#if !SD_TRT_AT_LEAST(10, 0)
#error "specdeploy TensorRT plugins need TensorRT >= 10.0 (IPluginV3): JetPack 6.1 and later ship 10.3; JetPack 6.0 ships 8.6 (upgrade to JetPack 6.1+)"
#endif

/* Export of the library entry points. Not TENSORRTAPI: since TensorRT 10.x that macro expands to
 * nothing unless TENSORRT_BUILD_LIB is defined (TensorRT's own build), so with -fvisibility=hidden
 * the entry points would silently not be exported. */
#if defined(_WIN32)
#define SD_TRT_EXPORT __declspec(dllexport)
#else
#define SD_TRT_EXPORT __attribute__((visibility("default")))
#endif

#endif /* SPECDEPLOY_TRT_COMPAT_H */
