// The Python module mlxnote._ext._core: mlxnote's CPU primitives for MLX.
#include <nanobind/nanobind.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <vector>

#include "mlx/mlx.h"
#include "mlx/version.h"

#include "depthwise.h"
#include "pool.h"

namespace nb = nanobind;
namespace mx = mlx::core;

#define MLXNOTE_STR2(x) #x
#define MLXNOTE_STR(x) MLXNOTE_STR2(x)

namespace {

std::string isa() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return "x86-64-v4 (AVX-512)";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return "x86-64-v3 (AVX2, FMA)";
  }
  return "x86-64 (SSE2)";
#elif defined(__aarch64__)
  return "arm64 (NEON)";
#else
  return "generic";
#endif
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "mlxnote's CPU primitives for MLX (see mlxnote.kernels._ext)";
  m.attr("MLX_VERSION") = MLXNOTE_STR(MLX_VERSION_MAJOR) "." MLXNOTE_STR(
      MLX_VERSION_MINOR) "." MLXNOTE_STR(MLX_VERSION_PATCH);
  m.attr("KERNELS") = std::vector<std::string>{"depthwise_conv"};
  m.def("mlx_runtime_version", [] { return std::string(mx::version()); },
        "The version of the libmlx this module runs against.");
  m.def("isa", &isa, "The instruction set the kernels run with on this CPU.");
  m.def("threads", [] { return mlxnote::ThreadPool::instance().threads(); },
        "Threads of mlxnote's pool (the caller included).");
  m.def("set_threads", [](int n) { mlxnote::ThreadPool::instance().set_threads(n); },
        nb::arg("n"), "Resize mlxnote's pool (1: run kernels on the calling thread).");
  m.def(
      "depthwise_conv",
      [](const mx::array& x, const mx::array& w, const std::vector<int>& strides,
         const std::vector<std::pair<int, int>>& padding, const std::vector<int>& dilations,
         bool flip) { return mlxnote::depthwise_conv(x, w, strides, padding, dilations, flip); },
      nb::arg("x"), nb::arg("w"), nb::arg("strides"), nb::arg("padding"),
      nb::arg("dilations"), nb::arg("flip") = false,
      "Depthwise conv of x (N, [H,] W, C) with w (C*dm, [KH,] KW, 1), float32.");
}
