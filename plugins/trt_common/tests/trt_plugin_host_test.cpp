/*
 * Host-side test of the TensorRT plugin adapters: no GPU, no libnvinfer, only the TensorRT headers
 * and a C ABI implementation that takes host pointers (specdeploy_host). It drives the plugins the
 * way TensorRT does (getCreators -> createPlugin -> getOutputDataTypes/getOutputShapes ->
 * supportsFormatCombination -> configurePlugin -> getWorkspaceSize -> getFieldsToSerialize ->
 * createPlugin(kRUNTIME) -> attachToContext -> onShapeChange -> enqueue) and checks field parsing,
 * error messages, shapes, formats and the serialization round trip.
 *
 * IExprBuilder/IDimensionExpr have no public constructor; the test builds stand-ins through the
 * headers' own apiv:: implementation interfaces. That is for this test only: real engines get
 * TensorRT's objects.
 *
 * Build: cmake target specdeploy_trt_host_test (plugins/cmake/tensorrt.cmake, built when the host C ABI
 * library specdeploy_host exists), or plugins/tools/check_trt_headers.sh --host-test LIB INCLUDE_DIR.
 * Exit status 0 = all checks passed.
 */
#include "trt_common/trtCommon.h"

#include "spec_concat/trt/SpecConcatPlugin.h"
#include "spec_conv/trt/SpecConvPlugin.h"
#include "spec_pool/trt/SpecPoolPlugin.h"
#include "spec_to_spatial/trt/SpecToSpatialPlugin.h"

#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);

using namespace nvinfer1;

namespace
{
int gFailures = 0;

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            std::fprintf(stderr, "CHECK FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
            ++gFailures;                                                                                               \
        }                                                                                                              \
    } while (0)

class CapturingLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            messages.emplace_back(msg);
        }
    }
    bool saw(std::string const& needle) const
    {
        for (auto const& m : messages)
        {
            if (m.find(needle) != std::string::npos)
            {
                return true;
            }
        }
        return false;
    }
    std::vector<std::string> messages;
};

class Finder : public ILoggerFinder
{
public:
    explicit Finder(ILogger* l)
        : mLogger(l)
    {
    }
    ILogger* findLogger() override
    {
        return mLogger;
    }

private:
    ILogger* mLogger;
};

// --- stand-ins for TensorRT's expression objects ------------------------------------------------
class ConstImpl : public apiv::VDimensionExpr
{
public:
    explicit ConstImpl(int64_t v)
        : mV(v)
    {
    }
    bool isConstant() const override
    {
        return mV >= 0;
    }
    int64_t getConstantValue() const override
    {
        return mV >= 0 ? mV : INT64_MIN;
    }
    bool isSizeTensor() const override
    {
        return false;
    }
    int64_t mV;
};

class Expr : public IDimensionExpr
{
public:
    explicit Expr(int64_t v)
        : mStore(v)
    {
        mImpl = &mStore;
    }
    ~Expr() noexcept override = default;
    ConstImpl mStore;
};

class BuilderImpl : public apiv::VExprBuilder
{
public:
    IDimensionExpr const* constant(int64_t value) override
    {
        exprs.emplace_back(value);
        return &exprs.back();
    }
    IDimensionExpr const* operation(DimensionOperation, IDimensionExpr const&, IDimensionExpr const&) override
    {
        exprs.emplace_back(-1);
        return &exprs.back();
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        exprs.emplace_back(-1);
        return &exprs.back();
    }
    std::deque<Expr> exprs;
};

class Builder : public IExprBuilder
{
public:
    Builder()
    {
        mImpl = &impl;
    }
    ~Builder() noexcept override = default;
    BuilderImpl impl;
};

DimsExprs exprs(Builder& b, std::vector<int64_t> const& d) // -1 = not a build-time constant
{
    DimsExprs e{};
    e.nbDims = static_cast<int32_t>(d.size());
    for (size_t i = 0; i < d.size(); ++i)
    {
        e.d[i] = b.impl.constant(d[i]);
    }
    return e;
}

Dims dims(std::vector<int64_t> const& d)
{
    Dims r{};
    r.nbDims = static_cast<int32_t>(d.size());
    for (size_t i = 0; i < d.size(); ++i)
    {
        r.d[i] = d[i];
    }
    return r;
}

PluginTensorDesc desc(std::vector<int64_t> const& d, DataType t)
{
    PluginTensorDesc x{};
    x.dims = dims(d);
    x.type = t;
    x.format = TensorFormat::kLINEAR;
    x.scale = -1.F;
    return x;
}

DynamicPluginTensorDesc ddesc(std::vector<int64_t> const& d, DataType t, int64_t minB, int64_t maxB)
{
    DynamicPluginTensorDesc x{};
    std::vector<int64_t> any = d;
    any[0] = -1;
    x.desc = desc(any, t);
    std::vector<int64_t> lo = d, hi = d;
    lo[0] = minB;
    hi[0] = maxB;
    x.min = dims(lo);
    x.opt = dims(hi);
    x.max = dims(hi);
    return x;
}

// Fields the way the ONNX parser passes them: INT -> kINT32, FLOAT -> kFLOAT32, STRING -> kCHAR with NUL.
struct Fields
{
    Fields() = default;
    Fields(Fields const&) = delete; // PluginFields point into this object
    Fields& operator=(Fields const&) = delete;
    std::deque<std::string> strs;
    std::deque<std::vector<int32_t>> ints;
    std::deque<float> floats;
    std::vector<PluginField> f;
    Fields& i(char const* n, int32_t v)
    {
        ints.push_back({v});
        f.emplace_back(n, ints.back().data(), PluginFieldType::kINT32, 1);
        return *this;
    }
    Fields& is(char const* n, std::vector<int32_t> v)
    {
        ints.push_back(std::move(v));
        f.emplace_back(n, ints.back().data(), PluginFieldType::kINT32, static_cast<int32_t>(ints.back().size()));
        return *this;
    }
    Fields& fl(char const* n, float v)
    {
        floats.push_back(v);
        f.emplace_back(n, &floats.back(), PluginFieldType::kFLOAT32, 1);
        return *this;
    }
    Fields& s(char const* n, char const* v)
    {
        strs.emplace_back(v);
        f.emplace_back(n, strs.back().c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(strs.back().size() + 1));
        return *this;
    }
    PluginFieldCollection fc() const
    {
        PluginFieldCollection c{};
        c.nbFields = static_cast<int32_t>(f.size());
        c.fields = f.data();
        return c;
    }
};

IPluginCreatorV3One* creator(char const* name)
{
    int32_t n = 0;
    IPluginCreatorInterface* const* list = getCreators(n);
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(list[i]);
        if (std::strcmp(c->getPluginName(), name) == 0)
        {
            return c;
        }
    }
    return nullptr;
}

struct PluginDeleter
{
    void operator()(IPluginV3* p) const
    {
        delete p;
    }
};
using PluginPtr = std::unique_ptr<IPluginV3, PluginDeleter>;

IPluginV3OneBuild* build(IPluginV3* p)
{
    return static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
}
IPluginV3OneRuntime* runtime(IPluginV3* p)
{
    return static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
}
IPluginV3OneCore* core(IPluginV3* p)
{
    return static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE));
}

//! createPlugin(node) through the creator of `op` with fields `f`; CHECKs that it made a plugin.
PluginPtr createChecked(char const* op, char const* node, Fields const& f, TensorRTPhase phase = TensorRTPhase::kBUILD)
{
    PluginFieldCollection fc = f.fc();
    PluginPtr p(creator(op)->createPlugin(node, &fc, phase));
    CHECK(p != nullptr);
    return p;
}

//! Serialize p's fields and create a runtime-phase plugin from them (through p's creator); CHECKs both.
PluginPtr roundTrip(IPluginV3* p)
{
    PluginFieldCollection const* fc = runtime(p)->getFieldsToSerialize();
    CHECK(fc != nullptr);
    PluginPtr rt(creator(core(p)->getPluginName())->createPlugin("roundtrip", fc, TensorRTPhase::kRUNTIME));
    CHECK(rt != nullptr);
    return rt;
}

//! getOutputShapes() calls: the expression builder, the last call's input and output expressions.
struct OutputShapes
{
    //! b->getOutputShapes() for inputs of these dims (-1: not a build-time constant).
    int32_t operator()(IPluginV3OneBuild* b, std::vector<std::vector<int64_t>> const& inputDims)
    {
        ins.clear();
        for (auto const& d : inputDims)
        {
            ins.push_back(exprs(eb, d));
        }
        return b->getOutputShapes(ins.data(), static_cast<int32_t>(ins.size()), nullptr, 0, &out, 1, eb);
    }
    Builder eb;
    std::vector<DimsExprs> ins;
    DimsExprs out{};
};

//! onShapeChange, then enqueue on host buffers with a workspace of wsBytes (and some slack); CHECKs both.
void checkRuns(IPluginV3OneRuntime* r, std::vector<PluginTensorDesc> const& in, PluginTensorDesc const& out,
    std::vector<void const*> const& inputs, void* output, size_t wsBytes)
{
    CHECK(r->onShapeChange(in.data(), static_cast<int32_t>(in.size()), &out, 1) == 0);
    std::vector<unsigned char> ws(wsBytes + 16);
    void* outs[1] = {output};
    CHECK(r->enqueue(in.data(), &out, inputs.data(), outs, ws.data(), nullptr) == 0);
}

//! C ABI workspace bytes of `p` for `batch` samples (fn: sd_*_workspace_size); CHECKs SD_OK.
template <typename Params, typename Fn>
size_t abiWorkspace(Fn fn, Params const& p, int32_t batch)
{
    size_t bytes = 0;
    CHECK(fn(&p, batch, &bytes) == SD_OK);
    return bytes;
}

// -------------------------------------------------------------------------------------------------

void testCreators()
{
    int32_t n = 0;
    IPluginCreatorInterface* const* list = getCreators(n);
    CHECK(n == 4);
    char const* names[] = {"SpecConv", "SpecPool", "SpecToSpatial", "SpecConcat"};
    for (char const* name : names)
    {
        IPluginCreatorV3One* c = creator(name);
        CHECK(c != nullptr);
        if (c != nullptr)
        {
            CHECK(std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0);
            CHECK(std::strcmp(c->getPluginVersion(), "1") == 0);
            CHECK(std::strcmp(c->getPluginNamespace(), "") == 0);
            CHECK(c->getFieldNames() != nullptr && c->getFieldNames()->nbFields > 0);
        }
    }
    (void) list;
}

void convFields(Fields& f, char const* domain, int32_t C, int32_t Hs, int32_t Ws, int32_t k, int32_t cap, char const* vd,
    float beta = 0.5F, char const* activation = "tanh")
{
    f.s("in_domain", domain).i("C", C).i("Hs", Hs).i("Ws", Ws).i("k", k).fl("beta", beta).s("activation", activation);
    f.i("capacity", cap).s("value_dtype", vd);
}

//! The C ABI parameters of a SpecConv with Hs = Ws; a spatial input is float32 H x W = Hs - k + 1, a
//! spectral one has inRowWords words per row.
sd_spec_conv_params convParams(int32_t domain, int32_t C, int32_t O, int32_t Hs, int32_t k, float beta,
    int32_t activation, int32_t cap, int32_t valueDtype, bool bias, int64_t inRowWords = 0)
{
    sd_spec_conv_params p{};
    p.in_domain = domain;
    p.C = C;
    p.O = O;
    if (domain == SD_DOMAIN_SPATIAL)
    {
        p.H = Hs - k + 1;
        p.W = Hs - k + 1;
    }
    p.Hs = Hs;
    p.Ws = Hs;
    p.k = k;
    p.beta = beta;
    p.activation = activation;
    p.capacity = cap;
    p.value_dtype = valueDtype;
    p.x_type = SD_FLOAT32;
    p.has_bias = bias ? 1 : 0;
    p.in_row_words = inRowWords;
    return p;
}

void testSpecConvSpatial(CapturingLogger& log)
{
    // Layer 1 of a 28x28 model: C=1, k=3 -> Hs = Ws = 30, F = 30*16 = 480, O = 4.
    int32_t const B = 2, C = 1, H = 28, k = 3, Hs = 30, O = 4, cap = 300;
    int32_t const F = Hs * (Hs / 2 + 1);
    Fields f;
    convFields(f, "spatial", C, Hs, Hs, k, cap, "fp16");
    PluginPtr p = createChecked("SpecConv", "conv1", f);
    if (!p)
    {
        return;
    }
    CHECK(std::strcmp(core(p.get())->getPluginName(), "SpecConv") == 0);
    IPluginV3OneBuild* b = build(p.get());
    CHECK(b->getNbOutputs() == 1);

    DataType in3[3] = {DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT};
    DataType outT{};
    CHECK(b->getOutputDataTypes(&outT, 1, in3, 3) == 0 && outT == DataType::kINT32);

    OutputShapes shapes;
    CHECK(shapes(b, {{-1, C, H, H}, {O, C, k, k}, {O}}) == 0);
    int64_t const NB = (F + 127) / 128;
    int64_t const S = 4 + 5 * NB * O + 1 + cap * 1; // fp16 values: 1 word each
    DimsExprs const& out = shapes.out;
    CHECK(out.nbDims == 2 && out.d[0] == shapes.ins[0].d[0] && out.d[1]->isConstant()
        && out.d[1]->getConstantValue() == S);

    // O unknown at build time -> clear error
    log.messages.clear();
    CHECK(shapes(b, {{-1, C, H, H}, {-1, C, k, k}, {-1}}) != 0);
    CHECK(log.saw("conv1") && log.saw("initializer"));

    // Wrong spatial size: H = 27 with Hs = 30, k = 3
    log.messages.clear();
    CHECK(shapes(b, {{-1, C, 27, 28}, {O, C, k, k}, {O}}) != 0);
    CHECK(log.saw("H + k - 1"));

    // Formats: X float or half, W/B float, output int32, linear only.
    DynamicPluginTensorDesc io[4] = {ddesc({B, C, H, H}, DataType::kHALF, 1, B), ddesc({O, C, k, k}, DataType::kFLOAT, O, O),
        ddesc({O}, DataType::kFLOAT, O, O), ddesc({B, S}, DataType::kINT32, 1, B)};
    CHECK(b->supportsFormatCombination(0, io, 3, 1));
    io[0].desc.type = DataType::kINT32;
    CHECK(!b->supportsFormatCombination(0, io, 3, 1));
    io[0].desc.type = DataType::kFLOAT;
    CHECK(b->supportsFormatCombination(0, io, 3, 1));
    io[1].desc.type = DataType::kHALF;
    CHECK(!b->supportsFormatCombination(1, io, 3, 1));
    io[1].desc.type = DataType::kFLOAT;
    CHECK(b->supportsFormatCombination(3, io, 3, 1));
    io[3].desc.format = TensorFormat::kCHW32;
    CHECK(!b->supportsFormatCombination(3, io, 3, 1));
    io[3].desc.format = TensorFormat::kLINEAR;

    CHECK(b->configurePlugin(io, 3, io + 3, 1) == 0);
    size_t const ws = b->getWorkspaceSize(io, 3, io + 3, 1);
    sd_spec_conv_params const prm = convParams(SD_DOMAIN_SPATIAL, C, O, Hs, k, 0.5F, SD_ACT_TANH, cap, SD_VALUE_FP16, true);
    CHECK(prm.H == H && prm.W == H);
    CHECK(ws == abiWorkspace(sd_spec_conv_workspace_size, prm, B));

    // Serialize -> runtime plugin -> attach -> onShapeChange -> enqueue on host buffers.
    PluginPtr rt = roundTrip(p.get());
    if (!rt)
    {
        return;
    }
    PluginPtr ctx(runtime(rt.get())->attachToContext(nullptr));
    CHECK(ctx != nullptr);
    IPluginV3OneRuntime* r = runtime(ctx.get());
    std::vector<PluginTensorDesc> in = {desc({B, C, H, H}, DataType::kFLOAT), desc({O, C, k, k}, DataType::kFLOAT),
        desc({O}, DataType::kFLOAT)};
    PluginTensorDesc o = desc({B, S}, DataType::kINT32);
    std::vector<float> x(static_cast<size_t>(B) * C * H * H, 0.25F), w(static_cast<size_t>(O) * C * k * k, 0.1F),
        bias(O, 0.F);
    std::vector<int32_t> y(static_cast<size_t>(B * S), -7);
    checkRuns(r, in, o, {x.data(), w.data(), bias.data()}, y.data(), ws);
    bool written = false;
    for (int32_t v : y)
    {
        written = written || v != -7;
    }
    CHECK(written);

    // Mismatched output width at runtime -> refused
    PluginTensorDesc oBad = desc({B, S + 1}, DataType::kINT32);
    log.messages.clear();
    CHECK(r->onShapeChange(in.data(), 3, &oBad, 1) != 0);
    CHECK(log.saw("S_out"));
}

void testSpecConvSpectralNoBias()
{
    int32_t const B = 3, C = 4, Hs = 15, O = 8, k = 3, cap = 200, capIn = 100;
    int32_t const F = Hs * (Hs / 2 + 1);
    Fields f;
    convFields(f, "spectral", C, Hs, Hs, k, cap, "fp32");
    PluginPtr p = createChecked("SpecConv", "conv2", f);
    if (!p)
    {
        return;
    }
    IPluginV3OneBuild* b = build(p.get());
    int64_t const Sin = sd_packed_row_words(C, F, capIn, SD_VALUE_FP32);
    int64_t const Sout = sd_packed_row_words(O, F, cap, SD_VALUE_FP32);
    OutputShapes shapes;
    CHECK(shapes(b, {{-1, Sin}, {O, C, k, k}}) == 0);
    CHECK(shapes.out.d[1]->getConstantValue() == Sout);
    DataType in2[2] = {DataType::kINT32, DataType::kFLOAT};
    DataType outT{};
    CHECK(b->getOutputDataTypes(&outT, 1, in2, 2) == 0 && outT == DataType::kINT32);
    DynamicPluginTensorDesc io[3] = {ddesc({B, Sin}, DataType::kINT32, 1, B),
        ddesc({O, C, k, k}, DataType::kFLOAT, O, O), ddesc({B, Sout}, DataType::kINT32, 1, B)};
    CHECK(b->supportsFormatCombination(0, io, 2, 1));
    CHECK(b->configurePlugin(io, 2, io + 2, 1) == 0);
    PluginPtr rt = roundTrip(p.get());
    if (!rt)
    {
        return;
    }
    std::vector<int32_t> x(static_cast<size_t>(B * Sin), 0); // empty packed rows (nnz 0): valid input
    std::vector<float> w(static_cast<size_t>(O) * C * k * k, 0.1F);
    std::vector<int32_t> y(static_cast<size_t>(B * Sout), 0);
    checkRuns(runtime(rt.get()), {desc({B, Sin}, DataType::kINT32), desc({O, C, k, k}, DataType::kFLOAT)},
        desc({B, Sout}, DataType::kINT32), {x.data(), w.data()}, y.data(), b->getWorkspaceSize(io, 2, io + 2, 1));
}

void expectRefused(CapturingLogger& log, IPluginCreatorV3One* c, Fields const& f, char const* expect)
{
    PluginFieldCollection fc = f.fc();
    log.messages.clear();
    IPluginV3* p = c->createPlugin("badnode", &fc, TensorRTPhase::kBUILD);
    CHECK(p == nullptr);
    delete p;
    bool const named = log.saw(expect) && log.saw("badnode");
    if (!named)
    {
        std::fprintf(stderr, "expected a message naming '%s' and the node; got:\n", expect);
        for (auto const& m : log.messages)
        {
            std::fprintf(stderr, "  %s\n", m.c_str());
        }
    }
    CHECK(named);
}

void testCreateErrors(CapturingLogger& log)
{
    IPluginCreatorV3One* c = creator("SpecConv");
    struct BadValue
    {
        char const* domain;
        int32_t C;
        int32_t cap;
        char const* valueDtype;
        char const* expect; //!< the field the message must name
    };
    for (BadValue const& v : {BadValue{"spatial", 1, 100, "fp64", "value_dtype"},
             BadValue{"frequency", 1, 100, "fp32", "in_domain"}, BadValue{"spatial", 1, 0, "fp32", "capacity"},
             BadValue{"spatial", 0, 100, "fp32", "C"}})
    {
        Fields f;
        convFields(f, v.domain, v.C, 30, 30, 3, v.cap, v.valueDtype);
        expectRefused(log, c, f, v.expect);
    }
    {
        Fields f;
        f.s("in_domain", "spatial").i("C", 1).i("Hs", 30).i("Ws", 30).fl("beta", 0.5F).s("activation", "tanh");
        f.i("capacity", 100).s("value_dtype", "fp32");
        expectRefused(log, c, f, "'k' is missing");
    }
    {
        Fields f;
        convFields(f, "spatial", 1, 30, 30, 3, 100, "fp32");
        f.f[5] = PluginField("beta", f.ints.front().data(), PluginFieldType::kINT32, 1);
        expectRefused(log, c, f, "'beta'");
    }
}

void testSpecPoolAndToSpatial()
{
    int32_t const B = 2, C = 8, Hs = 30, oHs = 15, cap = 500, capIn = 900;
    int32_t const F = Hs * (Hs / 2 + 1), Fo = oHs * (oHs / 2 + 1);
    {
        Fields f;
        f.i("C", C).i("Hs", Hs).i("Ws", Hs).i("out_Hs", oHs).i("out_Ws", oHs).i("capacity", cap).s("value_dtype", "fp16");
        PluginPtr p = createChecked("SpecPool", "pool1", f);
        if (p)
        {
            IPluginV3OneBuild* b = build(p.get());
            int64_t const Sin = sd_packed_row_words(C, F, capIn, SD_VALUE_FP16);
            int64_t const Sout = sd_packed_row_words(C, Fo, cap, SD_VALUE_FP16);
            OutputShapes shapes;
            CHECK(shapes(b, {{-1, Sin}}) == 0);
            CHECK(shapes.out.d[1]->getConstantValue() == Sout);
            DynamicPluginTensorDesc io[2] = {ddesc({B, Sin}, DataType::kINT32, 1, B), ddesc({B, Sout}, DataType::kINT32, 1, B)};
            CHECK(b->supportsFormatCombination(0, io, 1, 1) && b->supportsFormatCombination(1, io, 1, 1));
            CHECK(b->configurePlugin(io, 1, io + 1, 1) == 0);
            PluginPtr rt = roundTrip(p.get());
            if (rt)
            {
                std::vector<int32_t> x(static_cast<size_t>(B * Sin), 0), y(static_cast<size_t>(B * Sout), 0);
                checkRuns(runtime(rt.get()), {desc({B, Sin}, DataType::kINT32)}, desc({B, Sout}, DataType::kINT32),
                    {x.data()}, y.data(), b->getWorkspaceSize(io, 1, io + 1, 1));
            }
        }
        Fields bad;
        bad.i("C", C).i("Hs", Hs).i("Ws", Hs).i("out_Hs", Hs + 1).i("out_Ws", oHs).i("capacity", cap).s("value_dtype", "fp16");
        PluginFieldCollection bfc = bad.fc();
        IPluginV3* q = creator("SpecPool")->createPlugin("pool_bad", &bfc, TensorRTPhase::kBUILD);
        CHECK(q == nullptr);
        delete q;
    }
    {
        Fields f;
        f.i("C", C).i("Hs", oHs).i("Ws", oHs).s("value_dtype", "fp16");
        PluginPtr p = createChecked("SpecToSpatial", "to_spatial", f);
        if (p)
        {
            IPluginV3OneBuild* b = build(p.get());
            int64_t const Sin = sd_packed_row_words(C, Fo, cap, SD_VALUE_FP16);
            OutputShapes shapes;
            CHECK(shapes(b, {{-1, Sin}}) == 0);
            DimsExprs const& out = shapes.out;
            CHECK(out.nbDims == 4 && out.d[1]->getConstantValue() == C && out.d[2]->getConstantValue() == oHs
                && out.d[3]->getConstantValue() == oHs);
            DataType it = DataType::kINT32, ot{};
            CHECK(b->getOutputDataTypes(&ot, 1, &it, 1) == 0 && ot == DataType::kFLOAT);
            DynamicPluginTensorDesc io[2] = {ddesc({B, Sin}, DataType::kINT32, 1, B),
                ddesc({B, C, oHs, oHs}, DataType::kHALF, 1, B)};
            CHECK(b->supportsFormatCombination(1, io, 1, 1)); // half output accepted
            CHECK(b->configurePlugin(io, 1, io + 1, 1) == 0);
            PluginPtr rt = roundTrip(p.get());
            if (rt)
            {
                std::vector<int32_t> x(static_cast<size_t>(B * Sin), 0);
                std::vector<float> y(static_cast<size_t>(B) * C * oHs * oHs, 1.F);
                checkRuns(runtime(rt.get()), {desc({B, Sin}, DataType::kINT32)},
                    desc({B, C, oHs, oHs}, DataType::kFLOAT), {x.data()}, y.data(), b->getWorkspaceSize(io, 1, io + 1, 1));
                bool zeros = true; // an empty spectrum is the zero map
                for (float v : y)
                {
                    zeros = zeros && v == 0.F;
                }
                CHECK(zeros);
            }
        }
    }
}

void testSpecConcat(CapturingLogger& log)
{
    int32_t const B = 2, Hs = 8, cap = 300;
    std::vector<int32_t> Cs = {4, 6, 2};
    int32_t const F = Hs * (Hs / 2 + 1);
    Fields f;
    f.is("C", Cs).i("Hs", Hs).i("Ws", Hs).i("capacity", cap).s("value_dtype", "fp32");
    PluginPtr p = createChecked("SpecConcat", "cat1", f);
    if (!p)
    {
        return;
    }
    IPluginV3OneBuild* b = build(p.get());
    std::vector<int64_t> Sin = {sd_packed_row_words(4, F, 50, 0), sd_packed_row_words(6, F, 70, 0),
        sd_packed_row_words(2, F, 10, 0)};
    int64_t const Sout = sd_packed_row_words(12, F, cap, 0);
    OutputShapes shapes;
    CHECK(shapes(b, {{-1, Sin[0]}, {-1, Sin[1]}, {-1, Sin[2]}}) == 0);
    CHECK(shapes.out.d[1]->getConstantValue() == Sout);
    log.messages.clear();
    CHECK(shapes(b, {{-1, Sin[0]}, {-1, Sin[1]}}) != 0);
    CHECK(log.saw("field 'C' lists 3"));
    DynamicPluginTensorDesc io[4] = {ddesc({B, Sin[0]}, DataType::kINT32, 1, B), ddesc({B, Sin[1]}, DataType::kINT32, 1, B),
        ddesc({B, Sin[2]}, DataType::kINT32, 1, B), ddesc({B, Sout}, DataType::kINT32, 1, B)};
    CHECK(b->configurePlugin(io, 3, io + 3, 1) == 0);
    PluginPtr rt = roundTrip(p.get());
    if (!rt)
    {
        return;
    }
    std::vector<int32_t> x0(static_cast<size_t>(B * Sin[0]), 0), x1(static_cast<size_t>(B * Sin[1]), 0),
        x2(static_cast<size_t>(B * Sin[2]), 0), y(static_cast<size_t>(B * Sout), 0);
    checkRuns(runtime(rt.get()),
        {desc({B, Sin[0]}, DataType::kINT32), desc({B, Sin[1]}, DataType::kINT32), desc({B, Sin[2]}, DataType::kINT32)},
        desc({B, Sout}, DataType::kINT32), {x0.data(), x1.data(), x2.data()}, y.data(),
        b->getWorkspaceSize(io, 3, io + 3, 1));
}

//! The hybrid block through the plugin: activation "relu" + pool "max2" on a packed input. Fields (pool
//! parsed, serialized), the output width of the pooled size, the workspace (C ABI's, recorded in the
//! serialized fields), the run vs the C ABI called directly (bit-identical), and the refusals.
void testSpecConvHybrid(CapturingLogger& log)
{
    int32_t const B = 3, C = 3, Hs = 9, Ws = 8, O = 10, k = 3, capIn = 60, cap = 70;
    int32_t const F = Hs * (Ws / 2 + 1), oF = ((Hs + 1) / 2) * ((Ws + 1) / 2 / 2 + 1);
    Fields f;
    convFields(f, "spectral", C, Hs, Ws, k, cap, "fp16", 0.2F, "relu");
    f.s("pool", "max2");
    PluginPtr p = createChecked("SpecConv", "hyb1", f);
    if (!p)
    {
        return;
    }
    IPluginV3OneBuild* b = build(p.get());
    int64_t const Sin = sd_packed_row_words(C, F, capIn, SD_VALUE_FP16);
    int64_t const Sout = sd_packed_row_words(O, oF, cap, SD_VALUE_FP16);
    OutputShapes shapes;
    CHECK(shapes(b, {{-1, Sin}, {O, C, k, k}, {O}}) == 0);
    CHECK(shapes.out.d[1]->isConstant() && shapes.out.d[1]->getConstantValue() == Sout);
    DynamicPluginTensorDesc io[4] = {ddesc({B, Sin}, DataType::kINT32, 1, B), ddesc({O, C, k, k}, DataType::kFLOAT, O, O),
        ddesc({O}, DataType::kFLOAT, O, O), ddesc({B, Sout}, DataType::kINT32, 1, B)};
    CHECK(b->configurePlugin(io, 3, io + 3, 1) == 0);
    sd_spec_conv_params prm{};
    prm.in_domain = SD_DOMAIN_SPECTRAL;
    prm.C = C;
    prm.O = O;
    prm.Hs = Hs;
    prm.Ws = Ws;
    prm.k = k;
    prm.beta = 0.2F;
    prm.activation = SD_ACT_RELU;
    prm.pool = SD_POOL_MAX2;
    prm.capacity = cap;
    prm.value_dtype = SD_VALUE_FP16;
    prm.has_bias = 1;
    prm.in_row_words = Sin;
    size_t const ws = b->getWorkspaceSize(io, 3, io + 3, 1);
    CHECK(ws > 0 && ws == abiWorkspace(sd_spec_conv_workspace_size, prm, B));

    // input: a packed map from a spatial SpecConv of random images (so the rows are valid and non-empty)
    uint32_t seed = 777;
    auto rnd = [&seed]() {
        seed = seed * 1664525u + 1013904223u;
        return static_cast<float>((seed >> 8) & 0xFFFF) / 32768.F - 1.F;
    };
    sd_spec_conv_params c0{};
    c0.in_domain = SD_DOMAIN_SPATIAL;
    c0.C = 1;
    c0.O = C;
    c0.H = Hs - 2;
    c0.W = Ws - 2;
    c0.Hs = Hs;
    c0.Ws = Ws;
    c0.k = 3;
    c0.beta = 0.3F;
    c0.activation = SD_ACT_TANH;
    c0.capacity = capIn;
    c0.value_dtype = SD_VALUE_FP16;
    std::vector<float> img(static_cast<size_t>(B) * c0.H * c0.W), w0(static_cast<size_t>(C) * 9), w(static_cast<size_t>(O) * C * k * k),
        bias(O);
    for (auto* v : {&img, &w0, &w, &bias})
    {
        for (float& e : *v)
        {
            e = rnd();
        }
    }
    std::vector<int32_t> x(static_cast<size_t>(B * Sin));
    std::vector<unsigned char> ws0(abiWorkspace(sd_spec_conv_workspace_size, c0, B) + 8);
    CHECK(sd_spec_conv_forward(&c0, B, img.data(), w0.data(), nullptr, x.data(), ws0.data(), ws0.size() - 8, nullptr) == SD_OK);

    std::vector<int32_t> yref(static_cast<size_t>(B * Sout), 0), y(static_cast<size_t>(B * Sout), 0);
    std::vector<unsigned char> wsRef(ws + 8);
    CHECK(sd_spec_conv_forward(&prm, B, x.data(), w.data(), bias.data(), yref.data(), wsRef.data(), ws, nullptr) == SD_OK);
    CHECK(yref[0] > 0);
    PluginPtr rt = roundTrip(p.get());
    if (!rt)
    {
        return;
    }
    // the recorded workspace and the pool travel through serialization
    PluginFieldCollection const* sf = runtime(p.get())->getFieldsToSerialize();
    bool sawWs = false, sawPool = false;
    for (int32_t i = 0; i < sf->nbFields; ++i)
    {
        if (std::strcmp(sf->fields[i].name, "sd_workspace_bytes") == 0)
        {
            sawWs = sf->fields[i].type == PluginFieldType::kINT64 && *static_cast<int64_t const*>(sf->fields[i].data) == static_cast<int64_t>(ws);
        }
        if (std::strcmp(sf->fields[i].name, "pool") == 0)
        {
            sawPool = std::strcmp(static_cast<char const*>(sf->fields[i].data), "max2") == 0;
        }
    }
    CHECK(sawWs && sawPool);
    PluginPtr ctx(runtime(rt.get())->attachToContext(nullptr));
    std::vector<PluginTensorDesc> in = {desc({B, Sin}, DataType::kINT32), desc({O, C, k, k}, DataType::kFLOAT), desc({O}, DataType::kFLOAT)};
    checkRuns(runtime(ctx.get()), in, desc({B, Sout}, DataType::kINT32), {x.data(), w.data(), bias.data()}, y.data(), ws);
    CHECK(y == yref);

    // An engine whose recorded workspace is smaller than the batch needs: enqueue refuses (it used to pass
    // the size it had just computed, so this check could never fail).
    {
        Fields g;
        convFields(g, "spectral", C, Hs, Ws, k, cap, "fp16", 0.2F, "relu");
        g.s("pool", "max2");
        std::deque<int64_t> small{static_cast<int64_t>(ws) / 2};
        g.f.emplace_back("sd_workspace_bytes", &small.back(), PluginFieldType::kINT64, 1);
        PluginPtr q = createChecked("SpecConv", "hybsmall", g, TensorRTPhase::kRUNTIME);
        if (q)
        {
            IPluginV3OneRuntime* r = runtime(q.get());
            PluginTensorDesc o = desc({B, Sout}, DataType::kINT32);
            CHECK(r->onShapeChange(in.data(), 3, &o, 1) == 0);
            std::vector<unsigned char> wsb(ws + 16);
            std::vector<void const*> ptrs = {x.data(), w.data(), bias.data()};
            void* outs[1] = {y.data()};
            log.messages.clear();
            CHECK(r->enqueue(in.data(), &o, ptrs.data(), outs, wsb.data(), nullptr) != 0);
            CHECK(log.saw("hybsmall") && log.saw("workspace") && log.saw("TensorRT gives"));
        }
    }

    // refusals: pool with tanh names the field; an unknown pool lists the allowed values
    {
        Fields g;
        convFields(g, "spectral", C, Hs, Ws, k, cap, "fp16", 0.2F, "tanh");
        g.s("pool", "avg2");
        expectRefused(log, creator("SpecConv"), g, "'pool'");
        CHECK(log.saw("relu"));
    }
    {
        Fields g;
        convFields(g, "spectral", C, Hs, Ws, k, cap, "fp16", 0.2F, "relu");
        g.s("pool", "max3");
        expectRefused(log, creator("SpecConv"), g, "pool");
        CHECK(log.saw("'max2'") && log.saw("'avg2'"));
    }
    // capacity above O * the pooled size is refused once O is known (getOutputShapes)
    {
        Fields g;
        convFields(g, "spectral", C, Hs, Ws, k, O * oF + 1, "fp16", 0.2F, "relu");
        g.s("pool", "max2");
        PluginPtr q = createChecked("SpecConv", "hybcap", g);
        if (q)
        {
            log.messages.clear();
            OutputShapes sh;
            CHECK(sh(build(q.get()), {{-1, Sin}, {O, C, k, k}, {O}}) != 0);
            CHECK(log.saw("hybcap") && log.saw("capacity"));
        }
    }
}

//! The TensorRT major-version guard of getCreators/setLoggerFinder (ILoggerFinder's vtable differs).
void testVersionGuard()
{
    using specdeploy::trt::inferLibMajor;
    using specdeploy::trt::trtRuntimeCompatible;
    CHECK(inferLibMajor(100300) == 10 && inferLibMajor(101303) == 10 && inferLibMajor(110100) == 11);
    CHECK(inferLibMajor(8601) == 8);
    std::string why;
    int32_t const same = NV_TENSORRT_MAJOR * 10000 + 300;
    int32_t const other = (NV_TENSORRT_MAJOR == 10 ? 11 : 10) * 10000 + 100;
    CHECK(trtRuntimeCompatible(same, why) && why.empty());
    CHECK(trtRuntimeCompatible(-1, why)); // not inside TensorRT (this test): nothing to compare
    CHECK(!trtRuntimeCompatible(other, why) && why.find("ILoggerFinder") != std::string::npos
        && why.find("rebuild") != std::string::npos);
    // inside this test there is no libnvinfer: the entry points offer their creators
    CHECK(specdeploy::trt::runtimeInferLibVersion() == -1);
}

//! Runs a runtime-phase plugin (created from `f`) on host buffers: onShapeChange + enqueue (CHECKed).
void runPlugin(char const* op, Fields const& f, std::vector<PluginTensorDesc> const& in, PluginTensorDesc const& out,
    std::vector<void const*> const& inputs, void* output, size_t workspaceBytes)
{
    PluginPtr p = createChecked(op, "chain", f, TensorRTPhase::kRUNTIME);
    if (!p)
    {
        return;
    }
    PluginPtr ctx(runtime(p.get())->attachToContext(nullptr));
    checkRuns(runtime(ctx.get()), in, out, inputs, output, workspaceBytes);
}

//! conv1 (spatial, bias) -> pool -> conv2 (spectral, no bias) -> concat(conv2, conv2) -> to_spatial, every
//! step through the plugin and through the C ABI directly with hand-written parameters: the outputs
//! must be bit-identical, i.e. the adapters pass the right parameters, pointers and workspace.
void testChainMatchesAbi()
{
    int32_t const B = 2, C = 2, H = 14, k = 3, Hs = H + k - 1, O = 4, cap1 = 180, pHs = 8, cap2 = 90, O2 = 3;
    int32_t const cap3 = 120, capCat = 200;
    int32_t const F1 = Hs * (Hs / 2 + 1), F2 = pHs * (pHs / 2 + 1);
    uint32_t seed = 12345;
    auto rnd = [&seed]() {
        seed = seed * 1664525u + 1013904223u;
        return static_cast<float>((seed >> 8) & 0xFFFF) / 32768.F - 1.F;
    };
    std::vector<float> x(static_cast<size_t>(B) * C * H * H), w1(static_cast<size_t>(O) * C * k * k), b1(O),
        w2(static_cast<size_t>(O2) * O * k * k);
    for (auto* v : {&x, &w1, &b1, &w2})
    {
        for (float& e : *v)
        {
            e = rnd();
        }
    }
    std::vector<unsigned char> wsRef;

    // conv1: spatial, fp16 values, bias
    sd_spec_conv_params const c1 = convParams(SD_DOMAIN_SPATIAL, C, O, Hs, k, 0.05F, SD_ACT_TANH, cap1, SD_VALUE_FP16, true);
    int64_t const S1 = sd_spec_conv_out_row_words(&c1);
    CHECK(S1 == sd_packed_row_words(O, F1, cap1, SD_VALUE_FP16));
    size_t const ws1 = abiWorkspace(sd_spec_conv_workspace_size, c1, B);
    std::vector<int32_t> y1(static_cast<size_t>(B * S1), 0), y1ref(static_cast<size_t>(B * S1), 0);
    wsRef.assign(ws1 + 64, 0);
    CHECK(sd_spec_conv_forward(&c1, B, x.data(), w1.data(), b1.data(), y1ref.data(), wsRef.data(), ws1, nullptr)
        == SD_OK);
    {
        Fields f;
        convFields(f, "spatial", C, Hs, Hs, k, cap1, "fp16", 0.05F, "tanh");
        runPlugin("SpecConv", f,
            {desc({B, C, H, H}, DataType::kFLOAT), desc({O, C, k, k}, DataType::kFLOAT), desc({O}, DataType::kFLOAT)},
            desc({B, S1}, DataType::kINT32), {x.data(), w1.data(), b1.data()}, y1.data(), ws1);
    }
    CHECK(y1 == y1ref);
    CHECK(y1[0] > 0); // some coefficients kept

    // pool: 16x16 -> 8x8
    sd_spec_pool_params pp{};
    pp.C = O;
    pp.Hs = Hs;
    pp.Ws = Hs;
    pp.out_Hs = pHs;
    pp.out_Ws = pHs;
    pp.capacity = cap2;
    pp.value_dtype = SD_VALUE_FP16;
    pp.in_row_words = S1;
    int64_t const S2 = sd_spec_pool_out_row_words(&pp);
    size_t const ws2 = abiWorkspace(sd_spec_pool_workspace_size, pp, B);
    std::vector<int32_t> y2(static_cast<size_t>(B * S2), 0), y2ref(static_cast<size_t>(B * S2), 0);
    wsRef.assign(ws2 + 64, 0);
    CHECK(sd_spec_pool_forward(&pp, B, y1ref.data(), y2ref.data(), wsRef.data(), ws2, nullptr) == SD_OK);
    {
        Fields f;
        f.i("C", O).i("Hs", Hs).i("Ws", Hs).i("out_Hs", pHs).i("out_Ws", pHs).i("capacity", cap2);
        f.s("value_dtype", "fp16");
        runPlugin("SpecPool", f, {desc({B, S1}, DataType::kINT32)}, desc({B, S2}, DataType::kINT32), {y1.data()},
            y2.data(), ws2);
    }
    CHECK(y2 == y2ref);

    // conv2: spectral, no bias
    sd_spec_conv_params const c2
        = convParams(SD_DOMAIN_SPECTRAL, O, O2, pHs, k, 0.01F, SD_ACT_NONE, cap3, SD_VALUE_FP16, false, S2);
    int64_t const S3 = sd_spec_conv_out_row_words(&c2);
    size_t const ws3 = abiWorkspace(sd_spec_conv_workspace_size, c2, B);
    std::vector<int32_t> y3(static_cast<size_t>(B * S3), 0), y3ref(static_cast<size_t>(B * S3), 0);
    wsRef.assign(ws3 + 64, 0);
    CHECK(sd_spec_conv_forward(&c2, B, y2ref.data(), w2.data(), nullptr, y3ref.data(), wsRef.data(), ws3, nullptr)
        == SD_OK);
    {
        Fields f;
        convFields(f, "spectral", O, pHs, pHs, k, cap3, "fp16", 0.01F, "none");
        runPlugin("SpecConv", f, {desc({B, S2}, DataType::kINT32), desc({O2, O, k, k}, DataType::kFLOAT)},
            desc({B, S3}, DataType::kINT32), {y2.data(), w2.data()}, y3.data(), ws3);
    }
    CHECK(y3 == y3ref);

    // concat(conv2, pool): C = [O2, O]
    sd_spec_concat_params cc{};
    cc.n_inputs = 2;
    cc.C[0] = O2;
    cc.C[1] = O;
    cc.in_row_words[0] = S3;
    cc.in_row_words[1] = S2;
    cc.Hs = pHs;
    cc.Ws = pHs;
    cc.capacity = capCat;
    cc.value_dtype = SD_VALUE_FP16;
    int64_t const S4 = sd_spec_concat_out_row_words(&cc);
    CHECK(S4 == sd_packed_row_words(O2 + O, F2, capCat, SD_VALUE_FP16));
    size_t const ws4 = abiWorkspace(sd_spec_concat_workspace_size, cc, B);
    std::vector<int32_t> y4(static_cast<size_t>(B * S4), 0), y4ref(static_cast<size_t>(B * S4), 0);
    wsRef.assign(ws4 + 64, 0);
    int32_t const* xs[2] = {y3ref.data(), y2ref.data()};
    CHECK(sd_spec_concat_forward(&cc, B, xs, y4ref.data(), wsRef.data(), ws4, nullptr) == SD_OK);
    {
        Fields f;
        f.is("C", {O2, O}).i("Hs", pHs).i("Ws", pHs).i("capacity", capCat).s("value_dtype", "fp16");
        runPlugin("SpecConcat", f, {desc({B, S3}, DataType::kINT32), desc({B, S2}, DataType::kINT32)},
            desc({B, S4}, DataType::kINT32), {y3.data(), y2.data()}, y4.data(), ws4);
    }
    CHECK(y4 == y4ref);

    // to spatial, fp32 and fp16 outputs
    for (DataType yt : {DataType::kFLOAT, DataType::kHALF})
    {
        sd_spec_to_spatial_params ts{};
        ts.C = O2 + O;
        ts.Hs = pHs;
        ts.Ws = pHs;
        ts.value_dtype = SD_VALUE_FP16;
        ts.y_type = yt == DataType::kFLOAT ? SD_FLOAT32 : SD_FLOAT16;
        ts.in_row_words = S4;
        size_t const ws5 = abiWorkspace(sd_spec_to_spatial_workspace_size, ts, B);
        size_t const bytes = static_cast<size_t>(B) * (O2 + O) * pHs * pHs * (yt == DataType::kFLOAT ? 4 : 2);
        std::vector<unsigned char> y5(bytes, 0), y5ref(bytes, 0);
        wsRef.assign(ws5 + 64, 0);
        CHECK(sd_spec_to_spatial_forward(&ts, B, y4ref.data(), y5ref.data(), wsRef.data(), ws5, nullptr) == SD_OK);
        Fields f;
        f.i("C", O2 + O).i("Hs", pHs).i("Ws", pHs).s("value_dtype", "fp16");
        runPlugin("SpecToSpatial", f, {desc({B, S4}, DataType::kINT32)}, desc({B, O2 + O, pHs, pHs}, yt),
            {y4.data()}, y5.data(), ws5);
        CHECK(y5 == y5ref);
    }
}

} // namespace

int main()
{
    CapturingLogger logger;
    Finder finder(&logger);
    setLoggerFinder(&finder);
    std::printf("C ABI: %s (abi %d)\n", sd_build_info(), sd_abi_version());
    testCreators();
    testSpecConvSpatial(logger);
    testSpecConvSpectralNoBias();
    testCreateErrors(logger);
    testSpecPoolAndToSpatial();
    testSpecConcat(logger);
    testVersionGuard();
    if (std::strcmp(sd_build_info(), "stub") != 0)
    {
        testChainMatchesAbi(); // needs a real implementation of the C ABI (the host library)
        testSpecConvHybrid(logger);
    }
    if (gFailures != 0)
    {
        std::fprintf(stderr, "%d check(s) failed\n", gFailures);
        return 1;
    }
    std::printf("all TensorRT plugin host checks passed\n");
    return 0;
}
