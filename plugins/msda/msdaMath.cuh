/*
 * Multi-scale deformable attention: the per-output arithmetic, shared by the CUDA kernel and the host check.
 *
 * Every function here is __host__ __device__, so an nvcc-built host program evaluates exactly the arithmetic the
 * kernel runs (tests/msdaHostCheck.cu), and the CPU test compares it with the Python reference.
 * Node contract and semantics: plugins/README.md.
 */
#pragma once

#include <cstdint>
#include <cstddef>
#include <cuda_fp16.h>

namespace edge_lwdetr
{

//! Tensor pointers and sizes of one MSDA call (layout of plugins/README.md).
template <typename TValue, typename TLoc>
struct MsdaParams
{
    TValue const* value;           //!< [N, S, M, D]
    int32_t const* spatialShapes;  //!< [L, 2] (H, W)
    int32_t const* levelStart;     //!< [L]
    TLoc const* locations;         //!< [N, Lq, M, L, P, 2] normalised (x, y)
    TLoc const* weights;           //!< [N, Lq, M, L, P]
    TValue* output;                //!< [N, Lq, M, D]
    int32_t batch, spatialSize, heads, channels, queries, levels, points;
};

__host__ __device__ inline float toFloat(float v)
{
    return v;
}

__host__ __device__ inline float toFloat(__half v)
{
    return __half2float(v);
}

template <typename T>
__host__ __device__ inline T fromFloat(float v);

template <>
__host__ __device__ inline float fromFloat<float>(float v)
{
    return v;
}

template <>
__host__ __device__ inline __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

//! The four bilinear taps of a sample: pixel index y * W + x, or -1 when the tap lies outside the map (zero padding).
struct BilinearTaps
{
    int32_t index[4];
    float weight[4];
};

//! floor(v) as int32_t with the GPU's conversion rules on both sides (cvt.rmi.s32.f32: NaN gives 0, out-of-range
//! values saturate). A plain static_cast is undefined for NaN and out-of-range values, and on x86 gives INT_MIN,
//! which would let the host check pass where the device misbehaves.
__host__ __device__ inline int32_t floorToInt(float v)
{
#if defined(__CUDA_ARCH__)
    return __float2int_rd(v);
#else
    if (v != v)
    {
        return 0;
    }
    float const f = floorf(v);
    if (f >= 2147483647.0F)
    {
        return 2147483647;
    }
    if (f <= -2147483648.0F)
    {
        return -2147483647 - 1;
    }
    return static_cast<int32_t>(f);
#endif
}

//! Taps for normalised (x, y) on an H x W map, align_corners=False: pixel centres sit at (i + 0.5) / size.
//! A sample whose pixel position is not inside (-1, W) x (-1, H) has no tap on the map, and neither has a NaN one
//! (every comparison with NaN is false): such samples contribute nothing, as in NVIDIA's
//! multiscaleDeformableIm2ColCuda.cuh. Without this test a NaN location would convert to pixel 0 on the GPU and
//! bring NaN weights into the sum.
__host__ __device__ inline BilinearTaps bilinearTaps(float x, float y, int32_t height, int32_t width)
{
    float const px = x * static_cast<float>(width) - 0.5F;
    float const py = y * static_cast<float>(height) - 0.5F;
    BilinearTaps taps;
    if (!(px > -1.0F && py > -1.0F && px < static_cast<float>(width) && py < static_cast<float>(height)))
    {
        for (int32_t t = 0; t < 4; ++t)
        {
            taps.index[t] = -1;
            taps.weight[t] = 0.0F;
        }
        return taps;
    }
    int32_t const x0 = floorToInt(px);
    int32_t const y0 = floorToInt(py);
    float const fx = px - static_cast<float>(x0);
    float const fy = py - static_cast<float>(y0);
    int32_t const xs[2] = {x0, x0 + 1};
    int32_t const ys[2] = {y0, y0 + 1};
    float const wx[2] = {1.0F - fx, fx};
    float const wy[2] = {1.0F - fy, fy};
    for (int32_t j = 0; j < 2; ++j)
    {
        for (int32_t i = 0; i < 2; ++i)
        {
            bool const inside = xs[i] >= 0 && xs[i] < width && ys[j] >= 0 && ys[j] < height;
            taps.index[j * 2 + i] = inside ? ys[j] * width + xs[i] : -1;
            taps.weight[j * 2 + i] = inside ? wy[j] * wx[i] : 0.0F;
        }
    }
    return taps;
}

//! Channels per thread: one 16-byte vector (4 floats, 8 halves) when the rows allow it, else 1.
//! The vector loads and stores need 16-byte aligned addresses. Row offsets are multiples of D elements, so D a
//! multiple of the vector and 16-byte aligned value and output base pointers make every access aligned. TensorRT
//! guarantees 256-byte alignment only for the engine's I/O tensors (NvInferRuntime.h, setTensorAddress), not for
//! the tensors it passes to a plugin, so the base pointers are checked on every call.
template <typename TValue>
__host__ __device__ inline int32_t channelsPerThread(void const* value, void const* output, int32_t channels)
{
    constexpr int32_t kVec = static_cast<int32_t>(16 / sizeof(TValue));
    bool const aligned = reinterpret_cast<uintptr_t>(value) % 16 == 0 && reinterpret_cast<uintptr_t>(output) % 16 == 0;
    return aligned && channels % kVec == 0 ? kVec : 1;
}

//! VEC consecutive channels of one value row, as floats. On the device, 16-byte groups (4 floats or 8 halves, the
//! kernel's VEC) are one vector load through the read-only cache; the host reads element by element.
template <typename TValue, int32_t VEC>
__host__ __device__ inline void loadChannels(TValue const* __restrict__ row, float (&out)[VEC])
{
#if defined(__CUDA_ARCH__)
    if constexpr (VEC * sizeof(TValue) == sizeof(uint4))
    {
        uint4 const raw = __ldg(reinterpret_cast<uint4 const*>(row));
        TValue const* lanes = reinterpret_cast<TValue const*>(&raw);
#pragma unroll
        for (int32_t v = 0; v < VEC; ++v)
        {
            out[v] = toFloat(lanes[v]);
        }
    }
    else
#endif
    {
#pragma unroll
        for (int32_t v = 0; v < VEC; ++v)
        {
            out[v] = toFloat(row[v]);
        }
    }
}

/*!
 * Output channels [c0, c0 + VEC) of query q, head m, image n, accumulated in FP32:
 * sum over levels l and points p of weight(l, p) * bilinear(value level l, head m, location(l, p)).
 */
template <typename TValue, typename TLoc, int32_t VEC>
__host__ __device__ inline void msdaOutputChannels(
    MsdaParams<TValue, TLoc> const& p, int32_t n, int32_t q, int32_t m, int32_t c0, float (&acc)[VEC])
{
#pragma unroll
    for (int32_t v = 0; v < VEC; ++v)
    {
        acc[v] = 0.0F;
    }
    // Row (n, s, m) of value starts at ((n * S + s) * M + m) * D; consecutive pixels are M * D apart.
    int64_t const rowStride = static_cast<int64_t>(p.heads) * p.channels;
    TValue const* imageValue = p.value + static_cast<int64_t>(n) * p.spatialSize * rowStride + m * p.channels + c0;
    int64_t const sampleBase = ((static_cast<int64_t>(n) * p.queries + q) * p.heads + m) * p.levels * p.points;
    for (int32_t l = 0; l < p.levels; ++l)
    {
        int32_t const height = p.spatialShapes[2 * l];
        int32_t const width = p.spatialShapes[2 * l + 1];
        TValue const* levelValue = imageValue + static_cast<int64_t>(p.levelStart[l]) * rowStride;
        for (int32_t k = 0; k < p.points; ++k)
        {
            int64_t const sample = sampleBase + l * p.points + k;
            float const weight = toFloat(p.weights[sample]);
            BilinearTaps const taps
                = bilinearTaps(toFloat(p.locations[2 * sample]), toFloat(p.locations[2 * sample + 1]), height, width);
#pragma unroll
            for (int32_t t = 0; t < 4; ++t)
            {
                if (taps.index[t] < 0)
                {
                    continue;
                }
                float channels[VEC];
                loadChannels<TValue, VEC>(levelValue + taps.index[t] * rowStride, channels);
                float const scale = weight * taps.weight[t];
#pragma unroll
                for (int32_t v = 0; v < VEC; ++v)
                {
                    acc[v] += scale * channels[v];
                }
            }
        }
    }
}

} // namespace edge_lwdetr
