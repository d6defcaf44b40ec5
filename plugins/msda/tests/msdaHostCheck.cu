/*
 * Runs the MSDA kernel's per-output arithmetic (msdaMath.cuh) on the CPU, to check it without a GPU.
 *
 *   msdaHostCheck <fp32|fp16|fp16-fp32loc> N S M D Lq L P value shapes starts locations weights output
 *
 * Tensors are raw little-endian files: float32 for value, locations, weights and the output (half results are
 * widened), int32 for shapes and starts. Each output vector is computed with the kernel's VEC, so the host runs the
 * same loop nest and accumulation order as a device thread.
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

template <typename TValue, typename TLoc, int32_t VEC>
std::vector<float> run(int32_t const (&dims)[7], std::vector<float> const& value, std::vector<int32_t> const& shapes,
    std::vector<int32_t> const& starts, std::vector<float> const& locations, std::vector<float> const& weights)
{
    auto const [batch, spatial, heads, channels, queries, levels, points] = dims;
    std::vector<TValue> v = convert<TValue>(value);
    std::vector<TLoc> loc = convert<TLoc>(locations);
    std::vector<TLoc> w = convert<TLoc>(weights);
    std::vector<TValue> out(static_cast<size_t>(batch) * queries * heads * channels);
    MsdaParams<TValue, TLoc> const p{
        v.data(), shapes.data(), starts.data(), loc.data(), w.data(), out.data(), batch, spatial, heads, channels,
        queries, levels, points};
    for (int32_t n = 0; n < batch; ++n)
        for (int32_t q = 0; q < queries; ++q)
            for (int32_t m = 0; m < heads; ++m)
                for (int32_t c0 = 0; c0 < channels; c0 += VEC)
                {
                    float acc[VEC];
                    msdaOutputChannels<TValue, TLoc, VEC>(p, n, q, m, c0, acc);
                    for (int32_t k = 0; k < VEC; ++k)
                    {
                        out[((static_cast<size_t>(n) * queries + q) * heads + m) * channels + c0 + k]
                            = fromFloat<TValue>(acc[k]);
                    }
                }
    std::vector<float> result(out.size());
    for (size_t i = 0; i < out.size(); ++i)
    {
        result[i] = toFloat(out[i]);
    }
    return result;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 15)
    {
        std::fprintf(stderr, "usage: %s <fp32|fp16|fp16-fp32loc> N S M D Lq L P value shapes starts locations "
                             "weights output\n", argv[0]);
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

    std::vector<float> out;
    bool const vec4 = channels % 4 == 0;
    bool const vec8 = channels % 8 == 0;
    if (mode == "fp32")
        out = vec4 ? run<float, float, 4>(dims, value, shapes, starts, locations, weights)
                   : run<float, float, 1>(dims, value, shapes, starts, locations, weights);
    else if (mode == "fp16")
        out = vec8 ? run<__half, __half, 8>(dims, value, shapes, starts, locations, weights)
                   : run<__half, __half, 1>(dims, value, shapes, starts, locations, weights);
    else if (mode == "fp16-fp32loc")
        out = vec8 ? run<__half, float, 8>(dims, value, shapes, starts, locations, weights)
                   : run<__half, float, 1>(dims, value, shapes, starts, locations, weights);
    else
    {
        std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
    }
    FILE* file = std::fopen(argv[14], "wb");
    if (file == nullptr || std::fwrite(out.data(), sizeof(float), out.size(), file) != out.size())
    {
        std::fprintf(stderr, "cannot write %s\n", argv[14]);
        return 2;
    }
    std::fclose(file);
    return 0;
}
