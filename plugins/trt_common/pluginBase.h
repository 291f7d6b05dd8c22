/*
 * What the specdeploy TensorRT plugins share: every IPluginV3 / IPluginV3OneCore / OneBuild / OneRuntime
 * method (PluginBase, CRTP) and the IPluginCreatorV3One (PluginCreator). An op supplies only its fields,
 * its checks, how its tensors make the C ABI's parameter struct, its formats and its forward call.
 *
 * Each method TensorRT calls is noexcept and runs in SD_TRT_TRY/SD_TRT_CATCH: it checks the counts
 * (logged as "<op> node '<name>': <method>: ..."), asks the op for the parameters of the tensors it
 * is given (PluginBase::makeParams: Derived::fillParams, then the C ABI's *_validate; logged as
 * "<op> node '<name>': ..."), then does its part (output shape, output check, workspace, forward).
 *
 * Derived (the op's class) provides, as public members (called through CRTP, not virtual):
 *   static constexpr char const* kNAME               plugin name, e.g. "SpecPool"
 *   static constexpr char const* kABI                prefix of its C ABI functions, for messages ("sd_spec_pool")
 *   static constexpr auto kValidate, kWorkspaceSize  its sd_*_validate and sd_*_workspace_size
 *   static constexpr auto kOutRowWords               its sd_*_out_row_words (packed output only)
 *   static constexpr nvinfer1::DataType kOUTPUT_TYPE the type getOutputDataTypes() declares
 *   bool checkInputCount(Stage, int32_t nbInputs, std::string& err) const
 *       the input count at the start of a method, reported as "<method>: <err>"; true leaves it to
 *       fillParams (reported without the method name)
 *   bool checkInputTypes(nvinfer1::DataType const* types, int32_t nbInputs, std::string& err) const
 *   bool fillParams(Tensors const&, Params&, std::string& err) const
 *       the parameter struct for what is known at that stage (validated afterwards)
 *   sd_status forward(Params const&, int32_t batch, void const* const* inputs, void* const* outputs,
 *       void* workspace, size_t workspaceBytes, cudaStream_t stream) const
 * and hides, to change them, the defaults below, those of int32 tensors and a packed [B, S_out] output:
 *   checkTypeCounts, supportsType, outputShape, checkOutput.
 * PackedInputPlugin (ops with one packed input: SpecPool, SpecToSpatial) provides the input checks and
 * fillInput() for the input's part of the parameters.
 *
 * Attrs (the op's fields) provides `template <typename V> void fields(V& v)`, calling for each field, in
 * order, v.integer(name, int32_t&), v.integers(name, std::vector<int32_t>&), v.real(name, float&) or
 * v.choice(name, std::string&, int32_t& value, parser): that one list gives getFieldNames(), the parsing
 * in createPlugin(), getFieldsToSerialize() and the metadata string ("<kNAME> name=value ...").
 */
#ifndef SPECDEPLOY_TRT_PLUGIN_BASE_H
#define SPECDEPLOY_TRT_PLUGIN_BASE_H

#include "trtCommon.h"

#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace specdeploy
{
namespace trt
{

//! Which plugin method asks; tells the op's hooks what Tensors holds.
enum class Stage : int32_t
{
    kCREATE,    //!< createPlugin: no tensors, the fields alone
    kTYPES,     //!< getOutputDataTypes
    kSHAPES,    //!< getOutputShapes: dims that are build-time constants (-1 otherwise), no types
    kCONFIGURE, //!< configurePlugin: dims with single-valued profile ranges filled in, types, output
    kWORKSPACE, //!< getWorkspaceSize: the profile's max dims, types, output (when there is one)
    kRUNTIME,   //!< onShapeChange: the actual dims, types and output
};

//! What a plugin method knows about the tensors (see Stage); -1 for a dimension not known.
struct Tensors
{
    Stage stage;
    int32_t nbInputs{0};
    nvinfer1::Dims const* dims{nullptr};             //!< per input; nullptr: those of desc
    nvinfer1::PluginTensorDesc const* desc{nullptr}; //!< per input; nullptr where types are not known
    nvinfer1::PluginTensorDesc const* out{nullptr};  //!< the output; nullptr where it is not known

    nvinfer1::Dims const& dimsOf(int32_t i) const noexcept
    {
        return dims != nullptr ? dims[i] : desc[i].dims;
    }
    //! Unknown sizes may take valid placeholders (createPlugin and getOutputShapes only).
    bool placeholders() const noexcept
    {
        return stage == Stage::kCREATE || stage == Stage::kSHAPES;
    }
};

//! A string field that selects a C ABI enum value (parseValueDtype, parseDomain, parseActivation).
using ChoiceParser = bool (*)(FieldReader& r, std::string const& s, int32_t& out);

namespace detail
{
//! Attrs::fields() visitors: field list, parsing, serialization, metadata.
struct FieldNames
{
    std::vector<std::pair<char const*, nvinfer1::PluginFieldType>> spec;
    void integer(char const* name, int32_t&)
    {
        spec.emplace_back(name, nvinfer1::PluginFieldType::kINT32);
    }
    void integers(char const* name, std::vector<int32_t>&)
    {
        spec.emplace_back(name, nvinfer1::PluginFieldType::kINT32);
    }
    void real(char const* name, float&)
    {
        spec.emplace_back(name, nvinfer1::PluginFieldType::kFLOAT32);
    }
    void choice(char const* name, std::string&, int32_t&, ChoiceParser)
    {
        spec.emplace_back(name, nvinfer1::PluginFieldType::kCHAR);
    }
    void optionalChoice(char const* name, std::string& s, int32_t& v, ChoiceParser parse)
    {
        choice(name, s, v, parse);
    }
};

struct FieldParser
{
    FieldReader& r;
    void integer(char const* name, int32_t& v)
    {
        r.getInt(name, v);
    }
    void integers(char const* name, std::vector<int32_t>& v)
    {
        r.getInts(name, v);
    }
    void real(char const* name, float& v)
    {
        r.getFloat(name, v);
    }
    void choice(char const* name, std::string& s, int32_t& v, ChoiceParser parse)
    {
        if (r.getString(name, s))
        {
            parse(r, s, v);
        }
    }
    //! An attribute added after version 1 of the op set: absent keeps the Attrs default (old files stay valid).
    void optionalChoice(char const* name, std::string& s, int32_t& v, ChoiceParser parse)
    {
        if (r.has(name))
        {
            choice(name, s, v, parse);
        }
    }
};

struct FieldSerializer
{
    FieldWriter& w;
    void integer(char const* name, int32_t& v)
    {
        w.addInt(name, &v);
    }
    void integers(char const* name, std::vector<int32_t>& v)
    {
        w.addInts(name, v);
    }
    void real(char const* name, float& v)
    {
        w.addFloat(name, &v);
    }
    void choice(char const* name, std::string& s, int32_t&, ChoiceParser)
    {
        w.addString(name, s);
    }
    void optionalChoice(char const* name, std::string& s, int32_t& v, ChoiceParser parse)
    {
        choice(name, s, v, parse);
    }
};

//! " name=value" per field; arrays as "[a,b,c]".
struct MetadataWriter
{
    std::ostringstream& os;
    void integer(char const* name, int32_t& v)
    {
        os << ' ' << name << '=' << v;
    }
    void integers(char const* name, std::vector<int32_t>& v)
    {
        os << ' ' << name << "=[";
        for (size_t i = 0; i < v.size(); ++i)
        {
            os << (i ? "," : "") << v[i];
        }
        os << ']';
    }
    void real(char const* name, float& v)
    {
        os << ' ' << name << '=' << v;
    }
    void choice(char const* name, std::string& s, int32_t&, ChoiceParser)
    {
        os << ' ' << name << '=' << s;
    }
    void optionalChoice(char const* name, std::string& s, int32_t& v, ChoiceParser parse)
    {
        choice(name, s, v, parse);
    }
};

//! getPluginName/Version/Namespace of a plugin and of its creator.
template <typename Interface, typename Plugin>
class Identity : public Interface
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

inline size_t count(int32_t n) noexcept
{
    return n > 0 ? static_cast<size_t>(n) : 0;
}
} // namespace detail

template <typename Derived, typename AttrsT, typename ParamsT>
class PluginBase : public nvinfer1::IPluginV3,
                   public detail::Identity<nvinfer1::IPluginV3OneCore, Derived>,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    using Attrs = AttrsT;
    using Params = ParamsT;

    PluginBase(std::string node, Attrs attrs)
        : mNode(std::move(node))
        , mAttrs(std::move(attrs))
    {
        std::ostringstream os;
        os << Derived::kNAME;
        detail::MetadataWriter v{os};
        mAttrs.fields(v);
        mMetadata = os.str();
    }
    PluginBase(PluginBase const&) = default;
    PluginBase& operator=(PluginBase const&) = delete;
    ~PluginBase() override = default;

    //! The C ABI parameters for `t`: Derived::fillParams, then the C ABI's validation. False + message
    //! otherwise. createPlugin() calls it with Stage::kCREATE: the fields alone must make valid parameters.
    bool makeParams(Tensors const& t, Params& p, std::string& err) const
    {
        p = Params{};
        if (!self().fillParams(t, p, err))
        {
            return false;
        }
        sd_status const st = Derived::kValidate(&p);
        if (st != SD_OK)
        {
            err = lastAbiError(st);
            return false;
        }
        return true;
    }

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
            return new Derived(self());
        }
        SD_TRT_CATCH(whoAmI() + ": clone", nullptr)
    }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override
    {
        return 1;
    }

    char const* getMetadataString() noexcept override
    {
        return mMetadata.c_str();
    }

    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override
    {
        SD_TRT_TRY
        {
            std::string err;
            if (!self().checkTypeCounts(outputTypes != nullptr, nbInputs, nbOutputs, err))
            {
                logCounts("getOutputDataTypes", err);
                return -1;
            }
            if (inputTypes != nullptr && !self().checkInputTypes(inputTypes, nbInputs, err))
            {
                logError(whoAmI() + ": " + err);
                return -1;
            }
            outputTypes[0] = Derived::kOUTPUT_TYPE;
            return 0;
        }
        SD_TRT_CATCH(whoAmI() + ": getOutputDataTypes", -1)
    }

    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override
    {
        SD_TRT_TRY
        {
            bool const argsOk = inputs != nullptr && outputs != nullptr;
            if (!countsOk("getOutputShapes", Stage::kSHAPES, argsOk, nbInputs, nbOutputs))
            {
                return -1;
            }
            std::vector<nvinfer1::Dims> dims(detail::count(nbInputs));
            for (size_t i = 0; i < dims.size(); ++i)
            {
                dims[i].nbDims = inputs[i].nbDims;
                for (int32_t j = 0; j < inputs[i].nbDims && j < nvinfer1::Dims::MAX_DIMS; ++j)
                {
                    dims[i].d[j] = constantOr(inputs[i].d[j]);
                }
            }
            std::string err;
            Params p{};
            if (!makeParams(Tensors{Stage::kSHAPES, nbInputs, dims.data()}, p, err)
                || !self().outputShape(p, inputs, exprBuilder, outputs[0], err))
            {
                logError(whoAmI() + ": " + err);
                return -1;
            }
            return 0;
        }
        SD_TRT_CATCH(whoAmI() + ": getOutputShapes", -1)
    }

    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override
    {
        if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs)
        {
            return false;
        }
        nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
        return d.format == nvinfer1::TensorFormat::kLINEAR && self().supportsType(pos, d.type, nbInputs);
    }

    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override
    {
        SD_TRT_TRY
        {
            if (!deviceOk())
            {
                return -1;
            }
            if (!countsOk("configurePlugin", Stage::kCONFIGURE, in != nullptr && out != nullptr, nbInputs, nbOutputs))
            {
                return -1;
            }
            std::vector<nvinfer1::PluginTensorDesc> descs(detail::count(nbInputs));
            for (size_t i = 0; i < descs.size(); ++i)
            {
                descs[i] = in[i].desc;
                descs[i].dims = knownDims(in[i]);
            }
            std::string err;
            Params p{};
            if (!makeParams(Tensors{Stage::kCONFIGURE, nbInputs, nullptr, descs.data(), &out[0].desc}, p, err)
                || !self().checkOutput(p, knownDims(out[0]), Stage::kCONFIGURE, err))
            {
                logError(whoAmI() + ": " + err);
                return -1;
            }
            // Records the workspace TensorRT will give (the profile's max batch), serialized with the fields
            // so that enqueue can check the size it really has (mWsDeclared).
            (void) getWorkspaceSize(in, nbInputs, out, nbOutputs);
            return 0;
        }
        SD_TRT_CATCH(whoAmI() + ": configurePlugin", -1)
    }

    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override
    {
        SD_TRT_TRY
        {
            std::string err;
            Params p{};
            bool ok = inputs != nullptr && self().checkInputCount(Stage::kWORKSPACE, nbInputs, err);
            if (ok)
            {
                std::vector<nvinfer1::PluginTensorDesc> descs(detail::count(nbInputs));
                std::vector<nvinfer1::Dims> maxDims(descs.size());
                for (size_t i = 0; i < descs.size(); ++i)
                {
                    descs[i] = inputs[i].desc;
                    maxDims[i] = inputs[i].max;
                }
                nvinfer1::PluginTensorDesc const* o = outputs != nullptr && nbOutputs == 1 ? &outputs[0].desc : nullptr;
                ok = makeParams(Tensors{Stage::kWORKSPACE, nbInputs, maxDims.data(), descs.data(), o}, p, err);
            }
            if (!ok)
            {
                logError(whoAmI() + ": getWorkspaceSize: " + err);
                return 0;
            }
            int64_t const maxBatch = dimOr(inputs[0].max, 0);
            if (!fitsInt32(maxBatch))
            {
                logError(whoAmI() + ": getWorkspaceSize: max batch " + std::to_string(maxBatch) + " is not usable");
                return 0;
            }
            size_t bytes{0};
            sd_status const st = Derived::kWorkspaceSize(&p, static_cast<int32_t>(maxBatch), &bytes);
            if (st != SD_OK)
            {
                logError(whoAmI() + ": " + Derived::kABI + "_workspace_size: " + lastAbiError(st));
                return 0;
            }
            mWsDeclared = static_cast<int64_t>(bytes);
            return bytes;
        }
        SD_TRT_CATCH(whoAmI() + ": getWorkspaceSize", 0)
    }

    // IPluginV3OneRuntime: no per-context resources; every context gets its own copy.
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept override
    {
        return clone();
    }

    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override
    {
        SD_TRT_TRY
        {
            mRtReady = false;
            if (!deviceOk())
            {
                return -1;
            }
            if (!countsOk("onShapeChange", Stage::kRUNTIME, in != nullptr && out != nullptr, nbInputs, nbOutputs))
            {
                return -1;
            }
            std::string err;
            Params p{};
            if (!makeParams(Tensors{Stage::kRUNTIME, nbInputs, nullptr, in, out}, p, err)
                || !self().checkOutput(p, out[0].dims, Stage::kRUNTIME, err))
            {
                logError(whoAmI() + ": " + err);
                return -1;
            }
            mRt = p;
            mRtReady = true;
            return 0;
        }
        SD_TRT_CATCH(whoAmI() + ": onShapeChange", -1)
    }

    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* /*outputDesc*/,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override
    {
        SD_TRT_TRY
        {
            if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr)
            {
                logError(whoAmI() + ": enqueue: null arguments");
                return -1;
            }
            if (!mRtReady)
            {
                logError(whoAmI() + ": enqueue before a successful onShapeChange");
                return -1;
            }
            int64_t const batch = dimOr(inputDesc[0].dims, 0);
            if (!fitsInt32(batch))
            {
                logError(whoAmI() + ": enqueue: batch " + std::to_string(batch) + " is not usable");
                return -1;
            }
            if (batch == 0)
            {
                return 0;
            }
            int32_t const b = static_cast<int32_t>(batch);
            size_t need{0};
            sd_status st = Derived::kWorkspaceSize(&mRt, b, &need);
            // The workspace TensorRT gives is what getWorkspaceSize() returned at build time (recorded in
            // the engine as the field kWsField); check against that, not against the size just computed.
            // An engine without the field (built by an older plugin library) cannot be checked here.
            size_t have = need;
            if (st == SD_OK && mWsDeclared >= 0)
            {
                have = static_cast<size_t>(mWsDeclared);
                if (need > have)
                {
                    logError(whoAmI() + ": enqueue: batch " + std::to_string(b) + " needs " + std::to_string(need)
                        + " workspace bytes but TensorRT gives " + std::to_string(have)
                        + " (getWorkspaceSize at build time): rebuild the engine with this plugin library");
                    return -1;
                }
            }
            if (st == SD_OK)
            {
                st = self().forward(mRt, b, inputs, outputs, workspace, have, stream);
            }
            if (st != SD_OK)
            {
                logError(whoAmI() + ": " + Derived::kABI + "_forward: " + lastAbiError(st));
                return -1;
            }
            return 0;
        }
        SD_TRT_CATCH(whoAmI() + ": enqueue", -1)
    }

    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        SD_TRT_TRY
        {
            mSerial.clear();
            detail::FieldSerializer v{mSerial};
            mAttrs.fields(v);
            if (mWsDeclared >= 0)
            {
                mSerial.addInt64(kWsField, &mWsDeclared);
            }
            return mSerial.collection();
        }
        SD_TRT_CATCH(whoAmI() + ": getFieldsToSerialize", nullptr)
    }

    // Defaults of the hooks (Derived hides them to change them): one packed int32 [B, S_out] output.

    //! getOutputDataTypes' counts; on failure err (empty: "needs exactly 1 output") follows the method name.
    bool checkTypeCounts(bool haveOutputs, int32_t nbInputs, int32_t nbOutputs, std::string& err) const
    {
        return haveOutputs && nbOutputs == 1 && self().checkInputCount(Stage::kTYPES, nbInputs, err);
    }

    //! Type of tensor `pos` (inputs first, then the output) allowed, in linear format.
    bool supportsType(int32_t /*pos*/, nvinfer1::DataType type, int32_t /*nbInputs*/) const noexcept
    {
        return type == nvinfer1::DataType::kINT32;
    }

    //! getOutputShapes: [B, S_out], S_out from the parameters.
    bool outputShape(Params const& p, nvinfer1::DimsExprs const* inputs, nvinfer1::IExprBuilder& exprBuilder,
        nvinfer1::DimsExprs& out, std::string& err) const
    {
        int64_t const words = Derived::kOutRowWords(&p);
        if (words <= 0)
        {
            err = std::string(Derived::kABI) + "_out_row_words failed: " + lastAbiError(SD_ERR_INVALID_ARGUMENT);
            return false;
        }
        out.nbDims = 2;
        out.d[0] = inputs[0].d[0];
        out.d[1] = exprBuilder.constant(words);
        return true;
    }

    //! The output's dims against the parameters: configurePlugin (unknown width allowed), onShapeChange.
    bool checkOutput(Params const& p, nvinfer1::Dims const& out, Stage stage, std::string& err) const
    {
        int64_t const words = Derived::kOutRowWords(&p);
        int64_t const outWords = dimOr(out, 1);
        if (outWords == words || (stage != Stage::kRUNTIME && outWords < 0))
        {
            return true;
        }
        err = "output width " + std::to_string(outWords) + " != S_out = " + std::to_string(words);
        return false;
    }

protected:
    Derived& self() noexcept
    {
        return static_cast<Derived&>(*this);
    }
    Derived const& self() const noexcept
    {
        return static_cast<Derived const&>(*this);
    }

    std::string whoAmI() const
    {
        return ::specdeploy::trt::who(Derived::kNAME, mNode);
    }

    //! "<who>: <method>: <err>", err defaulting to "needs exactly 1 output".
    void logCounts(char const* method, std::string const& err) const
    {
        logError(whoAmI() + ": " + method + ": " + (err.empty() ? "needs exactly 1 output" : err));
    }

    //! The counts check at the start of getOutputShapes, configurePlugin and onShapeChange: the pointer
    //! arguments (argsOk), one output, then Derived::checkInputCount. Logs with logCounts().
    bool countsOk(char const* method, Stage stage, bool argsOk, int32_t nbInputs, int32_t nbOutputs) const
    {
        std::string err;
        if (argsOk && nbOutputs == 1 && self().checkInputCount(stage, nbInputs, err))
        {
            return true;
        }
        logCounts(method, err);
        return false;
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

public:
    //! Serialized field with the workspace bytes getWorkspaceSize() returned at build time (not an ONNX attribute).
    static constexpr char const* kWsField = "sd_workspace_bytes";
    void setDeclaredWorkspace(int64_t bytes) noexcept
    {
        mWsDeclared = bytes;
    }
    int64_t declaredWorkspace() const noexcept
    {
        return mWsDeclared;
    }

protected:
    std::string mNode;           //!< ONNX node name (the name createPlugin() got), for messages
    Attrs mAttrs;                //!< the fields (what getFieldsToSerialize() stores)
    std::string mMetadata;       //!< getMetadataString()
    FieldWriter mSerial;         //!< storage of getFieldsToSerialize()'s collection
    Params mRt{};                //!< parameters for enqueue, set by onShapeChange (batch-independent)
    bool mRtReady{false};        //!< mRt is set
    bool mDeviceChecked{false};  //!< sd_check_device() passed for this object
    mutable int64_t mWsDeclared{-1}; //!< workspace bytes TensorRT gives (getWorkspaceSize at build); -1 unknown
};

//! The hooks shared by the ops whose only input is one packed int32 map [B, S_in] of the fields' C
//! channels of Hs x Ws (SpecPool, SpecToSpatial); Attrs has C, Hs, Ws and valueDtype, Params has C, Hs,
//! Ws, value_dtype and in_row_words.
template <typename Derived, typename Attrs, typename Params>
class PackedInputPlugin : public PluginBase<Derived, Attrs, Params>
{
public:
    using PluginBase<Derived, Attrs, Params>::PluginBase;

    //! Checked together with the input's rank, in fillInput().
    bool checkInputCount(Stage /*stage*/, int32_t /*nbInputs*/, std::string& /*err*/) const noexcept
    {
        return true;
    }

    bool checkTypeCounts(bool haveOutputs, int32_t nbInputs, int32_t nbOutputs, std::string& err) const
    {
        if (haveOutputs && nbOutputs == 1 && nbInputs == 1)
        {
            return true;
        }
        err = "needs 1 input and 1 output, got " + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs);
        return false;
    }

    bool checkInputTypes(nvinfer1::DataType const* types, int32_t /*nbInputs*/, std::string& err) const
    {
        if (types[0] == nvinfer1::DataType::kINT32)
        {
            return true;
        }
        err = "the input must be int32 (packed)";
        return false;
    }

protected:
    //! The input map's part of the parameters: C, Hs, Ws, value_dtype from the fields, in_row_words from the
    //! input's width S_in after checking that there is one input of rank 2 (none at creation); where S_in
    //! is not known, a valid placeholder if allowed. False + message otherwise.
    bool fillInput(Tensors const& t, Params& p, std::string& err) const
    {
        Attrs const& a = this->mAttrs;
        p.C = a.C;
        p.Hs = a.Hs;
        p.Ws = a.Ws;
        p.value_dtype = a.valueDtype;
        int64_t known = -1;
        if (t.stage != Stage::kCREATE)
        {
            if (t.nbInputs != 1)
            {
                err = "needs exactly 1 input, got " + std::to_string(t.nbInputs);
                return false;
            }
            nvinfer1::Dims const& d = t.dimsOf(0);
            if (d.nbDims != 2)
            {
                err = "input must be packed int32 [B, S_in], got rank " + std::to_string(d.nbDims);
                return false;
            }
            known = dimOr(d, 1);
        }
        if (!rowWordsOr(known, t.placeholders(), a.C, numCoeffs(a.Hs, a.Ws), a.valueDtype, p.in_row_words))
        {
            err = "the packed width S_in of the input must be static";
            return false;
        }
        return true;
    }
};

//! The creator of Plugin: field list and createPlugin (parse the fields, then check that they make valid
//! C ABI parameters).
template <typename Plugin>
class PluginCreator : public detail::Identity<nvinfer1::IPluginCreatorV3One, Plugin>
{
public:
    //! Never throws: getCreators() constructs the creators as function-local statics.
    PluginCreator() noexcept
    {
        try
        {
            detail::FieldNames v;
            typename Plugin::Attrs a;
            a.fields(v);
            makeFieldNames(mFieldStorage, mFieldNames, v.spec);
        }
        catch (...)
        {
            mFieldStorage.clear();
            mFieldNames = nvinfer1::PluginFieldCollection{};
            try
            {
                logError(std::string(Plugin::kNAME) + " creator: could not build the field list");
            }
            catch (...)
            {
                log(nvinfer1::ILogger::Severity::kERROR, "specdeploy: could not build a creator's field list");
            }
        }
    }
    ~PluginCreator() override = default;

    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mFieldNames;
    }

    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase /*phase*/) noexcept override
    {
        std::string node;
        SD_TRT_TRY
        {
            node = name != nullptr ? name : "";
            FieldReader r(Plugin::kNAME, node, fc);
            typename Plugin::Attrs a;
            detail::FieldParser v{r};
            a.fields(v);
            if (!r.ok())
            {
                logError(r.errors());
                return nullptr;
            }
            int64_t wsDeclared{-1};
            if (r.has(Plugin::kWsField) && (!r.getInt64(Plugin::kWsField, wsDeclared) || wsDeclared < 0))
            {
                logError(r.ok() ? who(Plugin::kNAME, node) + ": field " + Plugin::kWsField + " must be >= 0" : r.errors());
                return nullptr;
            }
            auto plugin = std::make_unique<Plugin>(node, std::move(a));
            plugin->setDeclaredWorkspace(wsDeclared);
            typename Plugin::Params p{};
            std::string err;
            if (!plugin->makeParams(Tensors{Stage::kCREATE}, p, err))
            {
                logError(who(Plugin::kNAME, node) + ": " + err);
                return nullptr;
            }
            return plugin.release();
        }
        SD_TRT_CATCH(who(Plugin::kNAME, node) + ": createPlugin", nullptr)
    }

private:
    std::vector<nvinfer1::PluginField> mFieldStorage;
    nvinfer1::PluginFieldCollection mFieldNames{};
};

} // namespace trt
} // namespace specdeploy

#endif /* SPECDEPLOY_TRT_PLUGIN_BASE_H */
