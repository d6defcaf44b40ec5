/*
 * EdgeLwdetrMSDA TensorRT plugin: shapes, formats, enqueue, and the library's two ways of registering its creator.
 * The arithmetic lives in msdaKernel.cu.
 */
#include "msdaPlugin.h"
#include "msdaKernel.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

using namespace nvinfer1;

namespace edge_lwdetr
{
namespace
{

enum Io : int32_t
{
    kValue = 0,
    kSpatialShapes = 1,
    kLevelStart = 2,
    kLocations = 3,
    kWeights = 4,
    kOutput = 5,
    kNbInputs = 5
};

constexpr int32_t kRanks[kNbInputs] = {4, 2, 1, 6, 5};

bool isFloat(DataType type)
{
    return type == DataType::kFLOAT || type == DataType::kHALF;
}

int32_t kernelType(DataType type)
{
    return type == DataType::kHALF ? EDGE_LWDETR_MSDA_FLOAT16 : EDGE_LWDETR_MSDA_FLOAT32;
}

//! The logger TensorRT handed the library through setLoggerFinder (dynamic loading, plugins serialized into a
//! version-compatible plan), as NVIDIA's plugin/vc/vfcCommon.cpp keeps it: set once, read under a lock.
class LoggerFinderSlot
{
public:
    void set(ILoggerFinder* finder) noexcept
    {
        std::lock_guard<std::mutex> lock(mMutex);
        if (mFinder == nullptr && finder != nullptr)
        {
            mFinder = finder;
        }
    }

    //! The logger of the engine or context calling the plugin; else TensorRT's global logger (statically loaded
    //! library: the logger of the last builder or runtime). Null only when TensorRT has made no logger yet.
    ILogger* logger() noexcept
    {
        std::lock_guard<std::mutex> lock(mMutex);
        ILogger* found = mFinder != nullptr ? mFinder->findLogger() : nullptr;
        return found != nullptr ? found : getLogger();
    }

private:
    std::mutex mMutex;
    ILoggerFinder* mFinder{nullptr};
};

LoggerFinderSlot gLoggerFinder;

//! Reports through TensorRT's logger, so errors land where the application sees the rest of TensorRT's output.
int32_t fail(char const* message)
{
    std::string const text = std::string(kMsdaPluginName) + " plugin: " + message;
    ILogger* const logger = gLoggerFinder.logger();
    if (logger != nullptr)
    {
        logger->log(ILogger::Severity::kERROR, text.c_str());
    }
    else
    {
        std::fprintf(stderr, "%s\n", text.c_str()); // no TensorRT logger exists yet: nothing else would show it
    }
    return -1;
}

//! Two dimensions agree unless both are known and differ (build-time descriptors carry -1 for dynamic sizes).
bool agree(int64_t a, int64_t b)
{
    return a < 0 || b < 0 || a == b;
}

int32_t checkDims(Dims const (&dims)[kNbInputs])
{
    for (int32_t i = 0; i < kNbInputs; ++i)
    {
        if (dims[i].nbDims != kRanks[i])
        {
            return fail("inputs must be value [N,S,M,D], spatial_shapes [L,2], level_start_index [L], "
                        "sampling_locations [N,Lq,M,L,P,2], attention_weights [N,Lq,M,L,P]");
        }
    }
    Dims const& value = dims[kValue];
    Dims const& loc = dims[kLocations];
    Dims const& weights = dims[kWeights];
    bool const consistent = agree(value.d[0], loc.d[0]) && agree(value.d[2], loc.d[2])
        && agree(dims[kSpatialShapes].d[0], loc.d[3]) && agree(dims[kLevelStart].d[0], loc.d[3])
        && agree(dims[kSpatialShapes].d[1], 2) && agree(loc.d[5], 2);
    for (int32_t i = 0; i < 5; ++i)
    {
        if (!agree(loc.d[i], weights.d[i]))
        {
            return fail("sampling_locations and attention_weights disagree in N, Lq, M, L or P");
        }
    }
    return consistent ? 0 : fail("value, spatial_shapes and sampling_locations disagree in N, M or L");
}

} // namespace

IPluginCapability* MsdaPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    }
    return nullptr;
}

IPluginV3* MsdaPlugin::clone() noexcept
{
    return new (std::nothrow) MsdaPlugin();
}

char const* MsdaPlugin::getPluginName() const noexcept
{
    return kMsdaPluginName;
}

char const* MsdaPlugin::getPluginVersion() const noexcept
{
    return kMsdaPluginVersion;
}

char const* MsdaPlugin::getPluginNamespace() const noexcept
{
    return kMsdaPluginNamespace;
}

int32_t MsdaPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t MsdaPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs != kNbInputs)
    {
        return fail("expects 5 inputs and 1 output");
    }
    outputTypes[0] = inputTypes[kValue];
    return 0;
}

int32_t MsdaPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& /*exprBuilder*/) noexcept
{
    if (nbInputs != kNbInputs || nbOutputs != 1 || inputs[kValue].nbDims != 4 || inputs[kLocations].nbDims != 6)
    {
        return fail("expects value [N,S,M,D] and sampling_locations [N,Lq,M,L,P,2]");
    }
    outputs[0].nbDims = 4;
    outputs[0].d[0] = inputs[kValue].d[0];
    outputs[0].d[1] = inputs[kLocations].d[1];
    outputs[0].d[2] = inputs[kValue].d[2];
    outputs[0].d[3] = inputs[kValue].d[3];
    return 0;
}

bool MsdaPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t /*nbInputs*/, int32_t /*nbOutputs*/) noexcept
{
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    DataType const valueType = inOut[kValue].desc.type;
    switch (pos)
    {
    case kValue: return isFloat(desc.type);
    case kSpatialShapes:
    case kLevelStart: return desc.type == DataType::kINT32;
    // FP16 value may come with FP16 or FP32 locations and weights (precision-sensitive arithmetic kept in FP32);
    // FP32 value needs FP32 ones.
    case kLocations: return desc.type == valueType || (valueType == DataType::kHALF && desc.type == DataType::kFLOAT);
    case kWeights: return desc.type == inOut[kLocations].desc.type;
    case kOutput: return desc.type == valueType;
    default: return false;
    }
}

int32_t MsdaPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNbInputs || nbOutputs != 1)
    {
        return fail("expects 5 inputs and 1 output");
    }
    Dims const dims[kNbInputs] = {in[0].desc.dims, in[1].desc.dims, in[2].desc.dims, in[3].desc.dims, in[4].desc.dims};
    return checkDims(dims);
}

size_t MsdaPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return 0;
}

int32_t MsdaPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNbInputs || nbOutputs != 1)
    {
        return fail("expects 5 inputs and 1 output");
    }
    Dims const dims[kNbInputs] = {in[0].dims, in[1].dims, in[2].dims, in[3].dims, in[4].dims};
    return checkDims(dims);
}

int32_t MsdaPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    Dims const& value = inputDesc[kValue].dims;
    Dims const& loc = inputDesc[kLocations].dims;
    int32_t const status = edgeLwdetrMsdaEnqueue(kernelType(inputDesc[kValue].type),
        kernelType(inputDesc[kLocations].type), inputs[kValue], static_cast<int32_t const*>(inputs[kSpatialShapes]),
        static_cast<int32_t const*>(inputs[kLevelStart]), inputs[kLocations], inputs[kWeights], outputs[0],
        static_cast<int32_t>(value.d[0]), static_cast<int32_t>(value.d[1]), static_cast<int32_t>(value.d[2]),
        static_cast<int32_t>(value.d[3]), static_cast<int32_t>(loc.d[1]), static_cast<int32_t>(loc.d[3]),
        static_cast<int32_t>(loc.d[4]), stream);
    return status == cudaSuccess ? 0 : fail(cudaGetErrorString(static_cast<cudaError_t>(status)));
}

IPluginV3* MsdaPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* MsdaPlugin::getFieldsToSerialize() noexcept
{
    return &mNoFields;
}

char const* MsdaPluginCreator::getPluginName() const noexcept
{
    return kMsdaPluginName;
}

char const* MsdaPluginCreator::getPluginVersion() const noexcept
{
    return kMsdaPluginVersion;
}

char const* MsdaPluginCreator::getPluginNamespace() const noexcept
{
    return kMsdaPluginNamespace;
}

PluginFieldCollection const* MsdaPluginCreator::getFieldNames() noexcept
{
    return &mNoFields;
}

IPluginV3* MsdaPluginCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* /*fc*/, TensorRTPhase /*phase*/) noexcept
{
    return new (std::nothrow) MsdaPlugin();
}

namespace
{
MsdaPluginCreator gCreator;
IPluginCreatorInterface* const gCreators[] = {&gCreator};
//! True while this copy of the library holds a static registration of gCreator in TensorRT's global registry.
std::atomic<bool> gStaticallyRegistered{false};

//! Static registration, for loaders that only dlopen the library: ctypes.CDLL, LD_PRELOAD, trtexec
//! --staticPlugins / --plugins, polygraphy --plugins, DeepStream's custom-lib-path. It uses the creator's own
//! namespace (TensorRT's REGISTER_TENSORRT_PLUGIN would use the empty one), and leaves alone a creator of the
//! same name, version and namespace that another copy of the library registered first (registerCreator would
//! refuse it and log an error).
struct Registrar
{
    Registrar() noexcept
    {
        IPluginRegistry* const registry = getPluginRegistry();
        if (registry == nullptr
            || registry->getCreator(kMsdaPluginName, kMsdaPluginVersion, kMsdaPluginNamespace) != nullptr)
        {
            return;
        }
        gStaticallyRegistered = registry->registerCreator(gCreator, kMsdaPluginNamespace);
    }
} const gRegistrar;
} // namespace

} // namespace edge_lwdetr

//! Dynamic registration (trtexec --dynamicPlugins, IBuilderConfig::setPluginsToSerialize / plugins_to_serialize,
//! IPluginRegistry::loadLibrary / load_library), the entry point named in samples/trtexec/README.md and
//! implemented in plugin/vc/vfcCommon.cpp. TensorRT registers the returned creators itself, and loadLibrary
//! "will fail and return nullptr if any of the plugins are already registered" (NvInferRuntimeCommon.h): the
//! library's dlopen has just run the static registration above, so that one is withdrawn first and TensorRT's
//! registration takes its place.
extern "C" EDGE_LWDETR_PLUGIN_API IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    using namespace edge_lwdetr;
    if (gStaticallyRegistered.exchange(false))
    {
        IPluginRegistry* const registry = getPluginRegistry();
        if (registry != nullptr)
        {
            registry->deregisterCreator(gCreator);
        }
    }
    nbCreators = static_cast<int32_t>(sizeof(gCreators) / sizeof(gCreators[0]));
    return gCreators;
}

//! Gives the library the logger of whichever engine or context calls it (plugin/vc/vfcCommon.cpp).
extern "C" EDGE_LWDETR_PLUGIN_API void setLoggerFinder(ILoggerFinder* finder)
{
    edge_lwdetr::gLoggerFinder.set(finder);
}
