/*
 * Multi-scale deformable attention CUDA kernel: a plain C entry point, usable without TensorRT (ctypes, tests).
 * Tensor layout and semantics: plugins/README.md.
 */
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

//! Exported even when the library hides its other symbols (-fvisibility=hidden).
#define EDGE_LWDETR_MSDA_API __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

//! Element types of the value / output tensor and of the locations and weights.
enum EdgeLwdetrMsdaType
{
    EDGE_LWDETR_MSDA_FLOAT32 = 0,
    EDGE_LWDETR_MSDA_FLOAT16 = 1
};

/*!
 * Enqueue MSDA on `stream`: no allocation, no synchronisation (safe inside CUDA-graph capture).
 * value [N,S,M,D] and output [N,Lq,M,D] have type `valueType`; locations [N,Lq,M,L,P,2] and weights [N,Lq,M,L,P]
 * have type `locType` (FP32 value requires FP32 locations); spatialShapes [L,2] and levelStart [L] are int32, all
 * on the device. Any base pointer alignment is accepted (16-byte aligned value and output take the vector path).
 * Non-finite sampling locations contribute nothing. Returns cudaSuccess, cudaErrorInvalidValue for an unsupported type pair or size, or the launch
 * error.
 */
EDGE_LWDETR_MSDA_API int32_t edgeLwdetrMsdaEnqueue(int32_t valueType, int32_t locType, void const* value, int32_t const* spatialShapes,
    int32_t const* levelStart, void const* locations, void const* weights, void* output, int32_t batch,
    int32_t spatialSize, int32_t heads, int32_t channels, int32_t queries, int32_t levels, int32_t points,
    cudaStream_t stream);

#ifdef __cplusplus
}
#endif
