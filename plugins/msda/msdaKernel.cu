/*
 * Multi-scale deformable attention CUDA kernel.
 *
 * One thread computes VEC consecutive channels of one (image, query, head): 4 floats or 8 halves, a 16-byte load
 * per bilinear tap (1 channel, scalar loads, when D or a buffer's alignment does not allow it), so the threads of a head read its value rows as contiguous 64-byte (D=16) or 128-byte (D=32)
 * segments. Locations and weights are read once per thread and broadcast through L1. Accumulation is FP32.
 */
#include "msdaKernel.h"
#include "msdaMath.cuh"

#include <algorithm>

namespace edge_lwdetr
{
namespace
{

constexpr int32_t kBlockSize = 256;
constexpr int64_t kMaxBlocks = 65535;

template <typename TValue, int32_t VEC>
__device__ inline void storeChannels(TValue* __restrict__ row, float const (&acc)[VEC])
{
    if constexpr (VEC * sizeof(TValue) == sizeof(uint4))
    {
        uint4 raw;
        TValue* lanes = reinterpret_cast<TValue*>(&raw);
#pragma unroll
        for (int32_t v = 0; v < VEC; ++v)
        {
            lanes[v] = fromFloat<TValue>(acc[v]);
        }
        *reinterpret_cast<uint4*>(row) = raw;
    }
    else
    {
#pragma unroll
        for (int32_t v = 0; v < VEC; ++v)
        {
            row[v] = fromFloat<TValue>(acc[v]);
        }
    }
}

template <typename TValue, typename TLoc, int32_t VEC>
__global__ void __launch_bounds__(kBlockSize) msdaKernel(MsdaParams<TValue, TLoc> p)
{
    int32_t const groups = p.channels / VEC;
    int64_t const total = static_cast<int64_t>(p.batch) * p.queries * p.heads * groups;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int32_t const group = static_cast<int32_t>(i % groups);
        int64_t const row = i / groups; // ((n * Lq) + q) * M + m
        int32_t const m = static_cast<int32_t>(row % p.heads);
        int32_t const q = static_cast<int32_t>((row / p.heads) % p.queries);
        int32_t const n = static_cast<int32_t>(row / (static_cast<int64_t>(p.heads) * p.queries));
        float acc[VEC];
        msdaOutputChannels<TValue, TLoc, VEC>(p, n, q, m, group * VEC, acc);
        storeChannels<TValue, VEC>(p.output + row * p.channels + group * VEC, acc);
    }
}

template <typename TValue, typename TLoc>
cudaError_t launch(MsdaParams<TValue, TLoc> const& p, cudaStream_t stream)
{
    constexpr int32_t kVec = static_cast<int32_t>(sizeof(uint4) / sizeof(TValue));
    // The 16-byte path only where every load and store is 16-byte aligned (see channelsPerThread).
    bool const vectorised = channelsPerThread<TValue>(p.value, p.output, p.channels) == kVec;
    int64_t const threads
        = static_cast<int64_t>(p.batch) * p.queries * p.heads * (vectorised ? p.channels / kVec : p.channels);
    if (threads == 0)
    {
        return cudaSuccess;
    }
    int64_t const blocks = std::min((threads + kBlockSize - 1) / kBlockSize, kMaxBlocks);
    if (vectorised)
    {
        msdaKernel<TValue, TLoc, kVec><<<static_cast<uint32_t>(blocks), kBlockSize, 0, stream>>>(p);
    }
    else
    {
        msdaKernel<TValue, TLoc, 1><<<static_cast<uint32_t>(blocks), kBlockSize, 0, stream>>>(p);
    }
    return cudaGetLastError();
}

template <typename TValue, typename TLoc>
MsdaParams<TValue, TLoc> params(void const* value, int32_t const* spatialShapes, int32_t const* levelStart,
    void const* locations, void const* weights, void* output, int32_t batch, int32_t spatialSize, int32_t heads,
    int32_t channels, int32_t queries, int32_t levels, int32_t points)
{
    return MsdaParams<TValue, TLoc>{static_cast<TValue const*>(value), spatialShapes, levelStart,
        static_cast<TLoc const*>(locations), static_cast<TLoc const*>(weights), static_cast<TValue*>(output), batch,
        spatialSize, heads, channels, queries, levels, points};
}

} // namespace
} // namespace edge_lwdetr

extern "C" EDGE_LWDETR_MSDA_API int32_t edgeLwdetrMsdaEnqueue(int32_t valueType, int32_t locType, void const* value,
    int32_t const* spatialShapes, int32_t const* levelStart, void const* locations, void const* weights, void* output,
    int32_t batch, int32_t spatialSize, int32_t heads, int32_t channels, int32_t queries, int32_t levels,
    int32_t points, cudaStream_t stream)
{
    using namespace edge_lwdetr;
    if (batch < 0 || spatialSize < 0 || heads <= 0 || channels <= 0 || queries < 0 || levels <= 0 || points <= 0)
    {
        return cudaErrorInvalidValue;
    }
#define EDGE_LWDETR_MSDA_LAUNCH(TV, TL)                                                                              \
    launch(params<TV, TL>(value, spatialShapes, levelStart, locations, weights, output, batch, spatialSize, heads,   \
               channels, queries, levels, points),                                                                   \
        stream)
    if (valueType == EDGE_LWDETR_MSDA_FLOAT32 && locType == EDGE_LWDETR_MSDA_FLOAT32)
    {
        return EDGE_LWDETR_MSDA_LAUNCH(float, float);
    }
    if (valueType == EDGE_LWDETR_MSDA_FLOAT16 && locType == EDGE_LWDETR_MSDA_FLOAT16)
    {
        return EDGE_LWDETR_MSDA_LAUNCH(__half, __half);
    }
    if (valueType == EDGE_LWDETR_MSDA_FLOAT16 && locType == EDGE_LWDETR_MSDA_FLOAT32)
    {
        return EDGE_LWDETR_MSDA_LAUNCH(__half, float);
    }
#undef EDGE_LWDETR_MSDA_LAUNCH
    return cudaErrorInvalidValue;
}
