/*
 * Shared helpers of the specdeploy TensorRT plugins: logging through the ILoggerFinder TensorRT
 * hands to the library, plugin-field parsing/serialization, and small shape helpers.
 * Nothing here throws across the TensorRT ABI: every function is noexcept or called inside a
 * try/catch of a noexcept plugin method.
 */
#ifndef SPECDEPLOY_TRT_COMMON_H
#define SPECDEPLOY_TRT_COMMON_H

#include "trtCompat.h"

#include "specdeploy/specdeploy_c.h"

#include <cstdint>
#include <string>
#include <vector>

namespace specdeploy
{
namespace trt
{

//! Plugin version and namespace of every specdeploy plugin (the ONNX parser's defaults, so it finds
//! them by op type alone).
constexpr char const* kPLUGIN_VERSION = "1";
constexpr char const* kPLUGIN_NAMESPACE = "";

//! Called by the library entry point setLoggerFinder(); keeps the first non-null finder.
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

//! Logs through the logger of the engine/builder that called the plugin (findLogger() must be
//! called on the calling thread, so it is looked up per message). Falls back to stderr when
//! TensorRT gave no finder (e.g. plugin used outside TensorRT).
void log(nvinfer1::ILogger::Severity severity, char const* msg) noexcept;
void logError(std::string const& msg) noexcept;
void logWarning(std::string const& msg) noexcept;
void logVerbose(std::string const& msg) noexcept;

//! "SpecConv node 'conv1'" — prefix of every message about one plugin instance.
std::string who(char const* op, std::string const& node);

//! The C ABI's message for the last failure on this thread, or a generic text.
std::string lastAbiError(sd_status status);

//! Reads typed fields from a PluginFieldCollection. Types accepted per kind:
//! int: kINT32 (what the ONNX parser sends for INT), kINT64, kINT16, kINT8 (range-checked);
//! float: kFLOAT32 (ONNX FLOAT), kFLOAT64, kFLOAT16 is refused;
//! string: kCHAR, length with or without the terminating NUL (the parser includes it).
//! Every failure records a message naming the field; ok() tells whether all reads succeeded.
class FieldReader
{
public:
    FieldReader(char const* op, std::string node, nvinfer1::PluginFieldCollection const* fc) noexcept;

    bool getInt(char const* name, int32_t& out);
    bool getFloat(char const* name, float& out);
    bool getString(char const* name, std::string& out);
    bool getInts(char const* name, std::vector<int32_t>& out);
    //! One integer field of any integer type, as int64 (the recorded workspace size).
    bool getInt64(char const* name, int64_t& out);
    //! Whether a field of that name is present (optional fields); records nothing.
    bool has(char const* name) const noexcept;

    bool ok() const noexcept
    {
        return mErrors.empty();
    }
    //! All failures, one per line (each names op, node and field).
    std::string errors() const;
    void fail(char const* name, std::string const& why);

private:
    nvinfer1::PluginField const* find(char const* name);
    //! find() of a field that must hold one value (`what`: "integer", "float" for the message).
    nvinfer1::PluginField const* findOne(char const* name, char const* what);
    bool toInt64(nvinfer1::PluginField const& f, int32_t index, int64_t& out, char const* name);

    char const* mOp;
    std::string mNode;
    nvinfer1::PluginFieldCollection const* mFc;
    std::vector<std::string> mErrors;
};

//! Builds the PluginFieldCollection of getFieldsToSerialize(); the pointers refer to the plugin's
//! members, so the plugin must outlive the returned collection (TensorRT's contract).
class FieldWriter
{
public:
    void clear();
    void addInt(char const* name, int32_t const* value);
    void addFloat(char const* name, float const* value);
    void addString(char const* name, std::string const& value); //!< kCHAR, length includes the NUL
    void addInts(char const* name, std::vector<int32_t> const& values);
    void addInt64(char const* name, int64_t const* value);
    nvinfer1::PluginFieldCollection const* collection();

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFc{};
};

//! Field lists for getFieldNames(): names and types, no data.
nvinfer1::PluginFieldCollection const* makeFieldNames(
    std::vector<nvinfer1::PluginField>& storage, nvinfer1::PluginFieldCollection& fc,
    std::vector<std::pair<char const*, nvinfer1::PluginFieldType>> const& spec);

//! String attributes -> C ABI enums; return false (and record a message in r) when not allowed.
bool parseValueDtype(FieldReader& r, std::string const& s, int32_t& out);
bool parseDomain(FieldReader& r, std::string const& s, int32_t& out);
bool parseActivation(FieldReader& r, std::string const& s, int32_t& out);
bool parsePool(FieldReader& r, std::string const& s, int32_t& out);
char const* valueDtypeName(int32_t v) noexcept;
char const* domainName(int32_t v) noexcept;
char const* activationName(int32_t v) noexcept;
char const* poolName(int32_t v) noexcept;

//! TensorRT's getInferLibVersion() of the running process (found with dlsym, the plugin library does not
//! link libnvinfer), or -1 when there is none (the plugins used outside TensorRT, e.g. the host test).
int32_t runtimeInferLibVersion() noexcept;

//! The major version in a getInferLibVersion() value: MAJOR*10000 + MINOR*100 + PATCH since TensorRT 10,
//! MAJOR*1000 + MINOR*100 + PATCH before.
int32_t inferLibMajor(int32_t libVersion) noexcept;

//! Whether TensorRT `libVersion` (getInferLibVersion(); < 0: unknown, accepted) can load this library, built
//! against NV_TENSORRT_MAJOR: only the same major. ILoggerFinder became an IVersionedInterface in 11.x, so a
//! library built on 10.x headers would call the wrong vtable slot of 11.x's finder (and the other way round).
//! False + why otherwise.
bool trtRuntimeCompatible(int32_t libVersion, std::string& why);

//! F = Hs * (Ws // 2 + 1) (0 if Hs or Ws < 1 or the product does not fit int32).
int32_t numCoeffs(int32_t Hs, int32_t Ws) noexcept;

//! Row words S of a packed input: `known` when >= 0; else, when placeholders are allowed, those of C
//! channels of F coefficients holding one value (valid whenever C, F and value_dtype are). False when
//! neither (the caller names the input).
bool rowWordsOr(int64_t known, bool placeholders, int32_t C, int32_t F, int32_t valueDtype, int64_t& out) noexcept;

//! Value of a dimension expression known at build time, or -1.
int64_t constantOr(nvinfer1::IDimensionExpr const* e, int64_t fallback = -1) noexcept;

//! dims.d[i] when dims has more than i dimensions and it is known (>= 0), else -1.
int64_t dimOr(nvinfer1::Dims const& dims, int32_t i) noexcept;

//! desc.dims of a configurePlugin()/getWorkspaceSize() tensor, with every wildcard (-1) whose profile
//! range is a single value (min == max) replaced by that value.
nvinfer1::Dims knownDims(nvinfer1::DynamicPluginTensorDesc const& t) noexcept;

//! 0 <= v <= INT32_MAX (a size the C ABI can take as int32).
inline bool fitsInt32(int64_t v) noexcept
{
    return v >= 0 && v <= 2147483647;
}

//! A spatial (non-packed) tensor type the C ABI takes: kFLOAT -> SD_FLOAT32, kHALF -> SD_FLOAT16; -1 otherwise.
int32_t floatTypeOf(nvinfer1::DataType t) noexcept;

} // namespace trt
} // namespace specdeploy

namespace specdeploy
{
namespace trt
{
//! Logs a caught exception; `what` (a callable returning std::string) names the method. Never throws,
//! even when building the message does.
template <typename What>
void logCaught(What const& what, char const* detail) noexcept
{
    try
    {
        logError(what() + ": " + detail);
    }
    catch (...)
    {
        log(nvinfer1::ILogger::Severity::kERROR, detail);
    }
}
} // namespace trt
} // namespace specdeploy

//! Wrap the body of a noexcept plugin method: SD_TRT_TRY { ... } SD_TRT_CATCH(message, valueOnError).
//! Any exception is logged (with `sdWhat`, an expression giving a std::string) and onError returned.
#define SD_TRT_TRY try
#define SD_TRT_CATCH(sdWhat, onError)                                                                                    \
    catch (std::exception const& e)                                                                                    \
    {                                                                                                                  \
        ::specdeploy::trt::logCaught([&]() { return std::string(sdWhat); }, e.what());                                 \
        return onError;                                                                                                \
    }                                                                                                                  \
    catch (...)                                                                                                        \
    {                                                                                                                  \
        ::specdeploy::trt::logCaught([&]() { return std::string(sdWhat); }, "unknown exception");                      \
        return onError;                                                                                                \
    }

#endif /* SPECDEPLOY_TRT_COMMON_H */
