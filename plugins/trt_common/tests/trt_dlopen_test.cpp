/*
 * Loads libspecdeploy_trt.so the way IPluginRegistry::loadLibrary does (dlopen + dlsym of the
 * entry points), and checks that getCreators/setLoggerFinder are exported and return the four
 * creators. No libnvinfer needed. Usage: specdeploy_trt_dlopen_test path/to/libspecdeploy_trt.so
 */
#include <NvInferRuntime.h>

#include <cstdio>
#include <cstring>
#include <dlfcn.h>

namespace
{
class NullLogger : public nvinfer1::ILogger
{
public:
    void log(Severity, nvinfer1::AsciiChar const*) noexcept override {}
};
class Finder : public nvinfer1::ILoggerFinder
{
public:
    nvinfer1::ILogger* findLogger() override
    {
        return &mLogger;
    }
    NullLogger mLogger;
};
} // namespace

int main(int argc, char** argv)
{
    if (argc != 2)
    {
        std::fprintf(stderr, "usage: %s libspecdeploy_trt.so\n", argv[0]);
        return 2;
    }
    void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr)
    {
        std::fprintf(stderr, "dlopen failed: %s\n", dlerror());
        return 1;
    }
    using GetCreators = nvinfer1::IPluginCreatorInterface* const* (*) (int32_t&);
    using SetLoggerFinder = void (*)(nvinfer1::ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(h, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(h, "setLoggerFinder"));
    if (getCreators == nullptr || setLoggerFinder == nullptr)
    {
        std::fprintf(stderr, "entry points not exported: getCreators=%p setLoggerFinder=%p\n",
            reinterpret_cast<void*>(getCreators), reinterpret_cast<void*>(setLoggerFinder));
        return 1;
    }
    static Finder finder;
    setLoggerFinder(&finder);
    int32_t n = 0;
    nvinfer1::IPluginCreatorInterface* const* list = getCreators(n);
    char const* expected[] = {"SpecConv", "SpecPool", "SpecToSpatial", "SpecConcat"};
    if (list == nullptr || n != 4)
    {
        std::fprintf(stderr, "getCreators returned %d creators\n", n);
        return 1;
    }
    for (int32_t i = 0; i < n; ++i)
    {
        if (std::strcmp(list[i]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
        {
            std::fprintf(stderr, "creator %d is a %s\n", i, list[i]->getInterfaceInfo().kind);
            return 1;
        }
        auto* c = static_cast<nvinfer1::IPluginCreatorV3One*>(list[i]);
        if (std::strcmp(c->getPluginName(), expected[i]) != 0 || std::strcmp(c->getPluginVersion(), "1") != 0
            || std::strcmp(c->getPluginNamespace(), "") != 0)
        {
            std::fprintf(stderr, "creator %d is %s v%s ns '%s'\n", i, c->getPluginName(), c->getPluginVersion(),
                c->getPluginNamespace());
            return 1;
        }
    }
    std::printf("libspecdeploy_trt.so exports getCreators (4 V3 creators) and setLoggerFinder\n");
    return 0;
}
