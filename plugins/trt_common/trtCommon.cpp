#include "trtCommon.h"

#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <mutex>

namespace specdeploy
{
namespace trt
{

namespace
{
std::mutex gFinderMutex;
nvinfer1::ILoggerFinder* gFinder{nullptr};

char const* severityName(nvinfer1::ILogger::Severity s) noexcept
{
    switch (s)
    {
    case nvinfer1::ILogger::Severity::kINTERNAL_ERROR: return "INTERNAL_ERROR";
    case nvinfer1::ILogger::Severity::kERROR: return "ERROR";
    case nvinfer1::ILogger::Severity::kWARNING: return "WARNING";
    case nvinfer1::ILogger::Severity::kINFO: return "INFO";
    case nvinfer1::ILogger::Severity::kVERBOSE: return "VERBOSE";
    }
    return "?";
}
} // namespace

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    std::lock_guard<std::mutex> lock(gFinderMutex);
    if (gFinder == nullptr && finder != nullptr)
    {
        gFinder = finder;
    }
}

void log(nvinfer1::ILogger::Severity severity, char const* msg) noexcept
{
    nvinfer1::ILogger* logger{nullptr};
    {
        std::lock_guard<std::mutex> lock(gFinderMutex);
        if (gFinder != nullptr)
        {
            try
            {
                logger = gFinder->findLogger();
            }
            catch (...)
            {
                logger = nullptr;
            }
        }
    }
    if (logger != nullptr)
    {
        logger->log(severity, msg);
        return;
    }
    if (severity <= nvinfer1::ILogger::Severity::kWARNING)
    {
        std::fprintf(stderr, "[specdeploy_trt] %s: %s\n", severityName(severity), msg);
    }
}

void logError(std::string const& msg) noexcept
{
    log(nvinfer1::ILogger::Severity::kERROR, msg.c_str());
}

void logWarning(std::string const& msg) noexcept
{
    log(nvinfer1::ILogger::Severity::kWARNING, msg.c_str());
}

void logVerbose(std::string const& msg) noexcept
{
    log(nvinfer1::ILogger::Severity::kVERBOSE, msg.c_str());
}

std::string who(char const* op, std::string const& node)
{
    std::string s(op);
    s += " node '";
    s += node;
    s += "'";
    return s;
}

std::string lastAbiError(sd_status status)
{
    char const* msg = sd_last_error();
    std::string s = (msg != nullptr && msg[0] != '\0') ? std::string(msg) : std::string("no message");
    s += " (sd_status ";
    s += std::to_string(static_cast<int>(status));
    s += ")";
    return s;
}

// ---------------------------------------------------------------------------------------------
// FieldReader

FieldReader::FieldReader(char const* op, std::string node, nvinfer1::PluginFieldCollection const* fc) noexcept
    : mOp(op)
    , mNode(std::move(node))
    , mFc(fc)
{
}

void FieldReader::fail(char const* name, std::string const& why)
{
    mErrors.push_back(who(mOp, mNode) + ": field '" + name + "' " + why);
}

std::string FieldReader::errors() const
{
    std::string s;
    for (auto const& e : mErrors)
    {
        if (!s.empty())
        {
            s += "\n";
        }
        s += e;
    }
    return s;
}

nvinfer1::PluginField const* FieldReader::find(char const* name)
{
    if (mFc != nullptr && mFc->fields != nullptr)
    {
        for (int32_t i = 0; i < mFc->nbFields; ++i)
        {
            nvinfer1::PluginField const& f = mFc->fields[i];
            if (f.name != nullptr && std::strcmp(f.name, name) == 0)
            {
                if (f.data == nullptr || f.length < 1)
                {
                    fail(name, "is present but has no data (length " + std::to_string(f.length) + ")");
                    return nullptr;
                }
                return &f;
            }
        }
    }
    fail(name, "is missing (required attribute of the specdeploy op set, see docs/ops.md)");
    return nullptr;
}

bool FieldReader::toInt64(nvinfer1::PluginField const& f, int32_t index, int64_t& out, char const* name)
{
    switch (f.type)
    {
    case nvinfer1::PluginFieldType::kINT32: out = static_cast<int32_t const*>(f.data)[index]; return true;
    case nvinfer1::PluginFieldType::kINT64: out = static_cast<int64_t const*>(f.data)[index]; return true;
    case nvinfer1::PluginFieldType::kINT16: out = static_cast<int16_t const*>(f.data)[index]; return true;
    case nvinfer1::PluginFieldType::kINT8: out = static_cast<int8_t const*>(f.data)[index]; return true;
    default: break;
    }
    fail(name, "must be an integer field (kINT32), got PluginFieldType " + std::to_string(static_cast<int>(f.type)));
    return false;
}

nvinfer1::PluginField const* FieldReader::findOne(char const* name, char const* what)
{
    nvinfer1::PluginField const* f = find(name);
    if (f != nullptr && f->length != 1)
    {
        fail(name, std::string("must be a single ") + what + ", got " + std::to_string(f->length) + " values");
        return nullptr;
    }
    return f;
}

bool FieldReader::getInt(char const* name, int32_t& out)
{
    nvinfer1::PluginField const* f = findOne(name, "integer");
    if (f == nullptr)
    {
        return false;
    }
    int64_t v{0};
    if (!toInt64(*f, 0, v, name))
    {
        return false;
    }
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
    {
        fail(name, "= " + std::to_string(v) + " does not fit int32");
        return false;
    }
    out = static_cast<int32_t>(v);
    return true;
}

bool FieldReader::getInts(char const* name, std::vector<int32_t>& out)
{
    nvinfer1::PluginField const* f = find(name);
    if (f == nullptr)
    {
        return false;
    }
    out.clear();
    out.reserve(static_cast<size_t>(f->length));
    for (int32_t i = 0; i < f->length; ++i)
    {
        int64_t v{0};
        if (!toInt64(*f, i, v, name))
        {
            return false;
        }
        if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
        {
            fail(name, "[" + std::to_string(i) + "] = " + std::to_string(v) + " does not fit int32");
            return false;
        }
        out.push_back(static_cast<int32_t>(v));
    }
    return true;
}

bool FieldReader::getInt64(char const* name, int64_t& out)
{
    nvinfer1::PluginField const* f = findOne(name, "integer");
    return f != nullptr && toInt64(*f, 0, out, name);
}

bool FieldReader::has(char const* name) const noexcept
{
    if (mFc == nullptr || mFc->fields == nullptr || name == nullptr)
    {
        return false;
    }
    for (int32_t i = 0; i < mFc->nbFields; ++i)
    {
        if (mFc->fields[i].name != nullptr && std::strcmp(mFc->fields[i].name, name) == 0)
        {
            return true;
        }
    }
    return false;
}

bool FieldReader::getFloat(char const* name, float& out)
{
    nvinfer1::PluginField const* f = findOne(name, "float");
    if (f == nullptr)
    {
        return false;
    }
    switch (f->type)
    {
    case nvinfer1::PluginFieldType::kFLOAT32: out = *static_cast<float const*>(f->data); return true;
    case nvinfer1::PluginFieldType::kFLOAT64:
    {
        // fp32 is what every runtime thresholds with (docs/format.md): round once, here.
        out = static_cast<float>(*static_cast<double const*>(f->data));
        return true;
    }
    default: break;
    }
    fail(name, "must be a float field (kFLOAT32), got PluginFieldType " + std::to_string(static_cast<int>(f->type)));
    return false;
}

bool FieldReader::getString(char const* name, std::string& out)
{
    nvinfer1::PluginField const* f = find(name);
    if (f == nullptr)
    {
        return false;
    }
    if (f->type != nvinfer1::PluginFieldType::kCHAR)
    {
        fail(name, "must be a string field (kCHAR), got PluginFieldType " + std::to_string(static_cast<int>(f->type)));
        return false;
    }
    char const* p = static_cast<char const*>(f->data);
    size_t n = 0;
    while (n < static_cast<size_t>(f->length) && p[n] != '\0')
    {
        ++n;
    }
    out.assign(p, n);
    return true;
}

// ---------------------------------------------------------------------------------------------
// FieldWriter

void FieldWriter::clear()
{
    mFields.clear();
}

void FieldWriter::addInt(char const* name, int32_t const* value)
{
    mFields.emplace_back(name, value, nvinfer1::PluginFieldType::kINT32, 1);
}

void FieldWriter::addFloat(char const* name, float const* value)
{
    mFields.emplace_back(name, value, nvinfer1::PluginFieldType::kFLOAT32, 1);
}

void FieldWriter::addString(char const* name, std::string const& value)
{
    mFields.emplace_back(name, value.c_str(), nvinfer1::PluginFieldType::kCHAR, static_cast<int32_t>(value.size() + 1));
}

void FieldWriter::addInts(char const* name, std::vector<int32_t> const& values)
{
    mFields.emplace_back(name, values.data(), nvinfer1::PluginFieldType::kINT32, static_cast<int32_t>(values.size()));
}

void FieldWriter::addInt64(char const* name, int64_t const* value)
{
    mFields.emplace_back(name, value, nvinfer1::PluginFieldType::kINT64, 1);
}

nvinfer1::PluginFieldCollection const* FieldWriter::collection()
{
    mFc.nbFields = static_cast<int32_t>(mFields.size());
    mFc.fields = mFields.data();
    return &mFc;
}

nvinfer1::PluginFieldCollection const* makeFieldNames(std::vector<nvinfer1::PluginField>& storage,
    nvinfer1::PluginFieldCollection& fc, std::vector<std::pair<char const*, nvinfer1::PluginFieldType>> const& spec)
{
    storage.clear();
    for (auto const& s : spec)
    {
        storage.emplace_back(s.first, nullptr, s.second, 1);
    }
    fc.nbFields = static_cast<int32_t>(storage.size());
    fc.fields = storage.data();
    return &fc;
}

// ---------------------------------------------------------------------------------------------
// Enumerations

namespace
{
struct Choice
{
    char const* name;
    int32_t value;
};

bool parseChoice(
    FieldReader& r, char const* field, std::string const& s, std::initializer_list<Choice> choices, int32_t& out)
{
    for (Choice const& c : choices)
    {
        if (s == c.name)
        {
            out = c.value;
            return true;
        }
    }
    std::string allowed;
    for (Choice const& c : choices)
    {
        allowed += (allowed.empty() ? "'" : ", '") + std::string(c.name) + "'";
    }
    r.fail(field, "= '" + s + "' is invalid: must be one of " + allowed);
    return false;
}
} // namespace

bool parseValueDtype(FieldReader& r, std::string const& s, int32_t& out)
{
    return parseChoice(r, "value_dtype", s, {{"fp32", SD_VALUE_FP32}, {"fp16", SD_VALUE_FP16}}, out);
}

bool parseDomain(FieldReader& r, std::string const& s, int32_t& out)
{
    return parseChoice(r, "in_domain", s, {{"spatial", SD_DOMAIN_SPATIAL}, {"spectral", SD_DOMAIN_SPECTRAL}}, out);
}

bool parseActivation(FieldReader& r, std::string const& s, int32_t& out)
{
    return parseChoice(r, "activation", s, {{"tanh", SD_ACT_TANH}, {"none", SD_ACT_NONE}, {"relu", SD_ACT_RELU}}, out);
}

bool parsePool(FieldReader& r, std::string const& s, int32_t& out)
{
    return parseChoice(r, "pool", s, {{"none", SD_POOL_NONE}, {"max2", SD_POOL_MAX2}, {"avg2", SD_POOL_AVG2}}, out);
}

char const* poolName(int32_t v) noexcept
{
    return v == SD_POOL_MAX2 ? "max2" : v == SD_POOL_AVG2 ? "avg2" : "none";
}

int32_t runtimeInferLibVersion() noexcept
{
    using Fn = int32_t (*)();
    void* sym = dlsym(RTLD_DEFAULT, "getInferLibVersion");
    if (sym == nullptr)
    {
        return -1;
    }
    Fn fn{nullptr};
    static_assert(sizeof(fn) == sizeof(sym), "function and object pointers differ in size");
    std::memcpy(&fn, &sym, sizeof(fn));
    return fn();
}

int32_t inferLibMajor(int32_t libVersion) noexcept
{
    return libVersion >= 100000 ? libVersion / 10000 : libVersion / 1000;
}

bool trtRuntimeCompatible(int32_t libVersion, std::string& why)
{
    if (libVersion < 0 || inferLibMajor(libVersion) == NV_TENSORRT_MAJOR)
    {
        return true;
    }
    why = "libspecdeploy_trt was built against TensorRT " + std::to_string(NV_TENSORRT_MAJOR)
        + ".x headers but is loaded by TensorRT " + std::to_string(inferLibMajor(libVersion)) + " (getInferLibVersion() = "
        + std::to_string(libVersion) + "); their plugin interfaces differ (ILoggerFinder's vtable), so it offers no "
          "plugin: rebuild it against this TensorRT's headers (SPECDEPLOY_BUILD_TRT, TensorRT_ROOT)";
    return false;
}

char const* valueDtypeName(int32_t v) noexcept
{
    return v == SD_VALUE_FP16 ? "fp16" : "fp32";
}

char const* domainName(int32_t v) noexcept
{
    return v == SD_DOMAIN_SPECTRAL ? "spectral" : "spatial";
}

char const* activationName(int32_t v) noexcept
{
    return v == SD_ACT_TANH ? "tanh" : v == SD_ACT_RELU ? "relu" : "none";
}

int32_t numCoeffs(int32_t Hs, int32_t Ws) noexcept
{
    if (Hs < 1 || Ws < 1)
    {
        return 0;
    }
    int64_t const f = static_cast<int64_t>(Hs) * (static_cast<int64_t>(Ws) / 2 + 1);
    return f > std::numeric_limits<int32_t>::max() ? 0 : static_cast<int32_t>(f);
}

bool rowWordsOr(int64_t known, bool placeholders, int32_t C, int32_t F, int32_t valueDtype, int64_t& out) noexcept
{
    if (known >= 0)
    {
        out = known;
        return true;
    }
    if (placeholders)
    {
        out = sd_packed_row_words(C, F, 1, valueDtype);
        return true;
    }
    return false;
}

int64_t constantOr(nvinfer1::IDimensionExpr const* e, int64_t fallback) noexcept
{
    if (e != nullptr && e->isConstant())
    {
        return e->getConstantValue();
    }
    return fallback;
}

int64_t dimOr(nvinfer1::Dims const& dims, int32_t i) noexcept
{
    if (i < 0 || i >= dims.nbDims || dims.d[i] < 0)
    {
        return -1;
    }
    return dims.d[i];
}

nvinfer1::Dims knownDims(nvinfer1::DynamicPluginTensorDesc const& t) noexcept
{
    nvinfer1::Dims d = t.desc.dims;
    for (int32_t i = 0; i < d.nbDims && i < nvinfer1::Dims::MAX_DIMS; ++i)
    {
        if (d.d[i] < 0 && i < t.min.nbDims && i < t.max.nbDims && t.min.d[i] == t.max.d[i] && t.min.d[i] >= 0)
        {
            d.d[i] = t.min.d[i];
        }
    }
    return d;
}

int32_t floatTypeOf(nvinfer1::DataType t) noexcept
{
    if (t == nvinfer1::DataType::kFLOAT)
    {
        return SD_FLOAT32;
    }
    if (t == nvinfer1::DataType::kHALF)
    {
        return SD_FLOAT16;
    }
    return -1;
}

} // namespace trt
} // namespace specdeploy
