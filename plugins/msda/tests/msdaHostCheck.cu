/*
 * Runs the MSDA kernel's per-output arithmetic (msdaMath.cuh) on the CPU, to check it without a GPU.
 *
 *   msdaHostCheck <fp32|fp16|fp16-fp32loc> N S M D Lq L P value shapes starts locations weights output [--misaligned]
 *
 * Tensors are raw little-endian files: float32 for value, locations, weights and the output (half results are
 * widened), int32 for shapes and starts. Each output vector is computed with the VEC the kernel's launcher chooses for
 * the buffers (channelsPerThread), so the host runs the same loop nest and accumulation order as a device thread;
 * --misaligned places value and output off a 16-byte boundary. Prints the channels per thread it used.
 */
#include "../msdaMath.cuh"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace edge_lwdetr;

namespace
{

template <typename T>
std::vector<T> readFile(char const* path, size_t count)
{
    std::vector<T> data(count);
    FILE* file = std::fopen(path, "rb");
    if (file == nullptr || std::fread(data.data(), sizeof(T), count, file) != count)
    {
        std::fprintf(stderr, "cannot read %zu values from %s\n", count, path);
        std::exit(2);
    }
    std::fclose(file);
    return data;
}

template <typename TOut>
std::vector<TOut> convert(std::vector<float> const& in)
{
    std::vector<TOut> out(in.size());
    for (size_t i = 0; i < in.size(); ++i)
    {
        out[i] = fromFloat<TOut>(in[i]);
    }
    return out;
}

//! The output channels of every (image, query, head), VEC at a time, as device threads compute them.
template <typename TValue, typename TLoc, int32_t VEC>
void compute(MsdaParams<TValue, TLoc> const& p)
{
    for (int32_t n = 0; n < p.batch; ++n)
        for (int32_t q = 0; q < p.queries; ++q)
            for (int32_t m = 0; m < p.heads; ++m)
                for (int32_t c0 = 0; c0 < p.channels; c0 += VEC)
                {
                    float acc[VEC];
                    msdaOutputChannels<TValue, TLoc, VEC>(p, n, q, m, c0, acc);
                    for (int32_t k = 0; k < VEC; ++k)
                    {
                        p.output[((static_cast<size_t>(n) * p.queries + q) * p.heads + m) * p.channels + c0 + k]
                            = fromFloat<TValue>(acc[k]);
                    }
                }
}

//! Runs the arithmetic with the channels per thread the kernel's launcher would choose for these buffers. With
//! `misaligned`, value and output start one element past a 16-byte boundary, as a plugin tensor may.
template <typename TValue, typename TLoc>
std::vector<float> run(int32_t const (&dims)[7], std::vector<float> const& value, std::vector<int32_t> const& shapes,
    std::vector<int32_t> const& starts, std::vector<float> const& locations, std::vector<float> const& weights,
    bool misaligned, int32_t& channelsPerThreadUsed)
{
    auto const [batch, spatial, heads, channels, queries, levels, points] = dims;
    size_t const outputSize = static_cast<size_t>(batch) * queries * heads * channels;
    // uint4 storage: 16-byte aligned; the misaligned views start sizeof(TValue) bytes in.
    size_t const offset = misaligned ? 1 : 0;
    std::vector<uint4> valueStorage((value.size() + offset) * sizeof(TValue) / sizeof(uint4) + 1);
    std::vector<uint4> outputStorage((outputSize + offset) * sizeof(TValue) / sizeof(uint4) + 1);
    TValue* v = reinterpret_cast<TValue*>(valueStorage.data()) + offset;
    TValue* out = reinterpret_cast<TValue*>(outputStorage.data()) + offset;
    for (size_t i = 0; i < value.size(); ++i)
    {
        v[i] = fromFloat<TValue>(value[i]);
    }
    std::vector<TLoc> loc = convert<TLoc>(locations);
    std::vector<TLoc> w = convert<TLoc>(weights);
    MsdaParams<TValue, TLoc> const p{
        v, shapes.data(), starts.data(), loc.data(), w.data(), out, batch, spatial, heads, channels, queries, levels,
        points};
    constexpr int32_t kVec = static_cast<int32_t>(sizeof(uint4) / sizeof(TValue));
    channelsPerThreadUsed = channelsPerThread<TValue>(v, out, channels);
    if (channelsPerThreadUsed == kVec)
    {
        compute<TValue, TLoc, kVec>(p);
    }
    else
    {
        compute<TValue, TLoc, 1>(p);
    }
    std::vector<float> result(outputSize);
    for (size_t i = 0; i < outputSize; ++i)
    {
        result[i] = toFloat(out[i]);
    }
    return result;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 15 && !(argc == 16 && std::string(argv[15]) == "--misaligned"))
    {
        std::fprintf(stderr, "usage: %s <fp32|fp16|fp16-fp32loc> N S M D Lq L P value shapes starts locations "
                             "weights output [--misaligned]\n", argv[0]);
        return 2;
    }
    std::string const mode = argv[1];
    int32_t dims[7];
    for (int32_t i = 0; i < 7; ++i)
    {
        dims[i] = std::atoi(argv[2 + i]);
    }
    auto const [batch, spatial, heads, channels, queries, levels, points] = dims;
    size_t const samples = static_cast<size_t>(batch) * queries * heads * levels * points;
    auto const value = readFile<float>(argv[9], static_cast<size_t>(batch) * spatial * heads * channels);
    auto const shapes = readFile<int32_t>(argv[10], 2 * levels);
    auto const starts = readFile<int32_t>(argv[11], levels);
    auto const locations = readFile<float>(argv[12], 2 * samples);
    auto const weights = readFile<float>(argv[13], samples);

    bool const misaligned = argc == 16 && std::string(argv[15]) == "--misaligned";
    int32_t used = 0;
    std::vector<float> out;
    if (mode == "fp32")
        out = run<float, float>(dims, value, shapes, starts, locations, weights, misaligned, used);
    else if (mode == "fp16")
        out = run<__half, __half>(dims, value, shapes, starts, locations, weights, misaligned, used);
    else if (mode == "fp16-fp32loc")
        out = run<__half, float>(dims, value, shapes, starts, locations, weights, misaligned, used);
    else
    {
        std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
    }
    // The test reads which path the launcher's rule chose for these buffers.
    std::printf("channels-per-thread %d\n", used);
    FILE* file = std::fopen(argv[14], "wb");
    if (file == nullptr || std::fwrite(out.data(), sizeof(float), out.size(), file) != out.size())
    {
        std::fprintf(stderr, "cannot write %s\n", argv[14]);
        return 2;
    }
    std::fclose(file);
    return 0;
}
