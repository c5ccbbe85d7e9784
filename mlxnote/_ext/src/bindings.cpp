// The Python module mlxnote._ext._core: mlxnote's CPU primitives for MLX.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <vector>

#include "mlx/mlx.h"
#include "mlx/version.h"

#include "attention.h"
#include "batchnorm.h"
#include "dropout.h"
#include "columns.h"
#include "depthwise.h"
#include "depthwise_kernels.h"
#include "native_vector.h"
#include "dnnl.h"
#include "im2col.h"
#include "layernorm.h"
#include "pool.h"
#include "rnn.h"
#include "softmax.h"

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

using Ints = std::vector<int>;

mlxnote::Geometry geometry(const Ints& l, const Ints& o, const Ints& k, const Ints& s,
                           const Ints& d, const Ints& p, int c, int c0, int cg) {
  const int nd = static_cast<int>(l.size());
  if (nd < 1 || nd > 3 || o.size() != l.size() || k.size() != l.size() ||
      s.size() != l.size() || d.size() != l.size() || p.size() != l.size()) {
    throw std::invalid_argument("mlxnote im2col: 1 to 3 spatial dimensions, one entry each");
  }
  mlxnote::Geometry g;
  g.nd = nd;
  for (int j = 0; j < nd; ++j) {
    const int at = 3 - nd + j;
    g.l[at] = l[j];
    g.o[at] = o[j];
    g.k[at] = k[j];
    g.s[at] = s[j];
    g.d[at] = d[j];
    g.p[at] = p[j];
    if (l[j] < 1 || o[j] < 1 || k[j] < 1 || s[j] < 1 || d[j] < 1) {
      throw std::invalid_argument("mlxnote im2col: sizes, strides and dilations >= 1");
    }
  }
  g.c = c;
  g.c0 = c0;
  g.cg = cg;
  if (c0 < 0 || cg < 1 || c0 + cg > c) {
    throw std::invalid_argument("mlxnote im2col: channels [c0, c0 + cg) within [0, c)");
  }
  return g;
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "mlxnote's CPU primitives for MLX (see mlxnote.kernels._ext)";
  m.attr("MLX_VERSION") = MLXNOTE_STR(MLX_VERSION_MAJOR) "." MLXNOTE_STR(
      MLX_VERSION_MINOR) "." MLXNOTE_STR(MLX_VERSION_PATCH);
  m.attr("KERNELS") = std::vector<std::string>{"depthwise_conv", "im2col", "col2im", "rnn_scan", "masked_softmax", "attention", "layer_norm", "batch_norm_train", "group_norm", "dropout", "dropout_mask", "contiguous_rows", "column_sums"};
  m.def("mlx_runtime_version", [] { return std::string(mx::version()); },
        "The version of the libmlx this module runs against.");
  m.def(
      "isa",
      [] { return isa() + ", " + std::to_string(mlxnote::kernels::vector_floats()) + "-float vectors"; },
      "The instruction set the kernels run with on this CPU, and the floats in the vectors of\n"
      "the explicitly vectorized ones (MLXNOTE_SIMD=avx2|baseline caps them).");
  m.def("threads", [] { return mlxnote::ThreadPool::instance().threads(); },
        "Threads of mlxnote's pool (the caller included).");
  m.def("set_threads", [](int n) { mlxnote::ThreadPool::instance().set_threads(n); },
        nb::arg("n"), "Resize mlxnote's pool (1: run kernels on the calling thread).");
  m.def(
      "depthwise_conv",
      [](const mx::array& x, const mx::array& w, const std::vector<int>& strides,
         const std::vector<std::pair<int, int>>& padding, const std::vector<int>& dilations,
         bool flip, const std::optional<mx::array>& bias) {
        return mlxnote::depthwise_conv(x, w, strides, padding, dilations, flip, bias);
      },
      nb::arg("x"), nb::arg("w"), nb::arg("strides"), nb::arg("padding"),
      nb::arg("dilations"), nb::arg("flip") = false, nb::arg("bias") = nb::none(),
      "Depthwise conv of x (N, [H,] W, C) with w (C*dm, [KH,] KW, 1) (+ bias (C*dm,)), "
      "float32.");
  m.def(
      "contiguous_rows", [](const mx::array& a) { return mlxnote::contiguous_rows(a); },
      nb::arg("a"), "a (float32, any layout) row-contiguous, copied on mlxnote's pool.");
  m.def(
      "column_sums", [](const mx::array& a) { return mlxnote::column_sums(a); }, nb::arg("a"),
      "(..., C) -> (C,): every other axis summed (float32 per 64 rows, float64 over them).");
  m.def(
      "dnnl_load",
      [m](const std::string& libdnnl, const std::string& impl) {
        auto why = mlxnote::dnnl_load(libdnnl, impl);
        auto kernels = m.attr("KERNELS");
        if (why.empty() && !nb::cast<bool>(kernels.attr("__contains__")("dnnl_conv"))) {
          kernels.attr("append")("dnnl_conv");
        }
        return why;
      },
      nb::arg("libdnnl"), nb::arg("impl"),
      "Open oneDNN (libdnnl's path) and mlxnote's kernels on it (libmlxnote_dnnl.so's):\n"
      "'' and 'dnnl_conv' in KERNELS on success, else why not.");
  m.def("dnnl_version", &mlxnote::dnnl_version, "oneDNN's version ('' when not loaded).");
  m.def(
      "dnnl_conv",
      [](const mx::array& x, const mx::array& w, const std::vector<int>& strides,
         const std::vector<std::pair<int, int>>& padding, const std::vector<int>& dilations,
         int groups, const std::optional<mx::array>& bias) {
        return mlxnote::dnnl_conv(x, w, strides, padding, dilations, groups, bias);
      },
      nb::arg("x"), nb::arg("w"), nb::arg("strides"), nb::arg("padding"),
      nb::arg("dilations"), nb::arg("groups") = 1, nb::arg("bias") = nb::none(),
      "Conv of x (N, *L, C) with w (O, *K, C / groups) (+ bias (O,), added by oneDNN; its\n"
      "gradient a chunked column sum) on oneDNN (direct algorithm), float32, as\n"
      "mx.conv_general computes it; after dnnl_load.");
  m.def(
      "dnnl_conv_input_grad",
      [](const mx::array& dy, const mx::array& w, const std::vector<int>& length,
         const std::vector<int>& strides, const std::vector<std::pair<int, int>>& padding,
         const std::vector<int>& dilations, const std::optional<mx::array>& bias) {
        return mlxnote::dnnl_conv_input_grad(dy, w, length, strides, padding, dilations, bias);
      },
      nb::arg("dy"), nb::arg("w"), nb::arg("length"), nb::arg("strides"), nb::arg("padding"),
      nb::arg("dilations"), nb::arg("bias") = nb::none(),
      "The input gradient (a transposed conv) of dnnl_conv(x, w, ...) for x of spatial size\n"
      "length: dy (N, *out, O), w (O, *K, C) -> (N, *length, C); groups 1; plus bias (C,).");
  m.def(
      "im2col",
      [](const mx::array& x, const Ints& out, const Ints& kernel, const Ints& strides,
         const Ints& dilations, const Ints& pad, int c0, int cg) {
        const int nd = x.ndim() - 2;
        Ints l(x.shape().begin() + 1, x.shape().end() - 1);
        if (static_cast<int>(l.size()) != nd) {
          throw std::invalid_argument("mlxnote im2col: x is (N, *spatial, C)");
        }
        const int c = x.shape(-1);
        return mlxnote::im2col(x, geometry(l, out, kernel, strides, dilations, pad, c, c0,
                                           cg < 0 ? c - c0 : cg));
      },
      nb::arg("x"), nb::arg("out"), nb::arg("kernel"), nb::arg("strides"),
      nb::arg("dilations"), nb::arg("pad"), nb::arg("c0") = 0, nb::arg("cg") = -1,
      "Columns (N, *out, *kernel, cg) of x (N, *L, C): x[o*s + k*d - pad], 0 outside.");
  m.def(
      "col2im",
      [](const mx::array& cols, const Ints& length, const Ints& kernel, const Ints& strides,
         const Ints& dilations, const Ints& pad) {
        const int nd = (cols.ndim() - 2) / 2;
        Ints o(cols.shape().begin() + 1, cols.shape().begin() + 1 + nd);
        const int c = cols.shape(-1);
        return mlxnote::col2im(cols, geometry(length, o, kernel, strides, dilations, pad, c, 0,
                                              c));
      },
      nb::arg("cols"), nb::arg("length"), nb::arg("kernel"), nb::arg("strides"),
      nb::arg("dilations"), nb::arg("pad"),
      "The transpose of im2col: cols (N, *O, *kernel, C) summed onto (N, *length, C).");
  m.def(
      "rnn_scan",
      [](const std::string& kind, const mx::array& xp, const mx::array& wh, const mx::array& h0,
         const std::optional<mx::array>& state, const std::optional<mx::array>& mask) {
        using mlxnote::RnnKind;
        const auto k = kind == "lstm"        ? RnnKind::Lstm
                       : kind == "gru"       ? RnnKind::Gru
                       : kind == "gru_after" ? RnnKind::GruAfter
                       : kind == "rnn"       ? RnnKind::Rnn
                                             : throw std::invalid_argument(
                                             "mlxnote rnn_scan: kind 'rnn', 'gru', "
                                             "'gru_after' or 'lstm'");
        return mlxnote::rnn_scan(k, xp, wh, h0, state, mask);
      },
      nb::arg("kind"), nb::arg("xp"), nb::arg("wh"), nb::arg("h0"),
      nb::arg("state") = nb::none(), nb::arg("mask") = nb::none(),
      "A tanh/sigmoid recurrence over input projections xp (B, T, k*H) with the recurrent\n"
      "kernel wh (H, k*H) from h0 (B, H), float32; state: c0 (B, H) for 'lstm', the\n"
      "recurrent bias (3*H,) for 'gru_after' (Keras's reset_after=True); mask (B, T) bool:\n"
      "False skips a step. Returns hseq (B, T, H), then what its gradient needs (LSTM: cseq,\n"
      "the activated gates; GRU: the gates, r * h or h @ U + b_U's h block).");
  m.def(
      "masked_softmax",
      [](const mx::array& x, const std::optional<mx::array>& mask, bool causal) {
        return mlxnote::masked_softmax(x, mask, causal);
      },
      nb::arg("x"), nb::arg("mask") = nb::none(), nb::arg("causal") = false,
      "Softmax over the last axis of float32 logits x, with a boolean (True = attend) or\n"
      "additive float32 mask broadcastable to x and/or a causal mask (key j > query i).");
  m.def(
      "attention",
      [](const mx::array& q, const mx::array& k, const mx::array& v, float scale,
         const std::optional<mx::array>& mask, bool causal) {
        return mlxnote::fused_attention(q, k, v, scale, mask, causal);
      },
      nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("scale"),
      nb::arg("mask") = nb::none(), nb::arg("causal") = false,
      "softmax(scale * q @ k^T masked) @ v for float32 q (B, H, Tq, D), k (B, H, Tk, D),\n"
      "v (B, H, Tk, Dv), fused per head; mask as masked_softmax's, broadcastable to\n"
      "(B, H, Tq, Tk). Returns [out (B, H, Tq, Dv), stats (B, H, Tq, 2)]: the softmax\n"
      "statistics its gradient recomputes the weights from.");
  m.def(
      "layer_norm",
      [](const mx::array& x, const std::optional<mx::array>& g, const std::optional<mx::array>& b,
         float eps) { return mlxnote::layer_norm(x, g, b, eps); },
      nb::arg("x"), nb::arg("gamma") = nb::none(), nb::arg("beta") = nb::none(),
      nb::arg("eps") = 1e-5f,
      "Layer norm of float32 x (..., d) over its last axis, then * gamma + beta (each (d,)\n"
      "or None).");
  m.def(
      "batch_norm_train",
      [](const mx::array& x, const mx::array& g, const mx::array& b, float eps) {
        return mlxnote::batch_norm_train(x, g, b, eps);
      },
      nb::arg("x"), nb::arg("gamma"), nb::arg("beta"), nb::arg("eps"),
      "Training-mode batch norm of float32 x (..., C) over every axis but the last:\n"
      "(y, mean (C,), biased var (C,)).");
  m.def(
      "group_norm",
      [](const mx::array& x, const mx::array& g, const mx::array& b, int groups, float eps) {
        return mlxnote::group_norm(x, g, b, groups, eps);
      },
      nb::arg("x"), nb::arg("gamma"), nb::arg("beta"), nb::arg("groups"), nb::arg("eps"),
      "Group norm of float32 x (N, ..., C) in `groups` groups of adjacent channels, the\n"
      "statistics per sample and group: (y, mean (N, groups), biased var (N, groups)).");
  m.def(
      "dropout",
      [](const mx::array& x, const mx::array& seed, float keep) {
        return mlxnote::dropout(x, seed, keep);
      },
      nb::arg("x"), nb::arg("seed"), nb::arg("keep"),
      "Dropout of float32 x: x * mask / keep, the mask drawn from seed (uint32 (2,), e.g. an\n"
      "MLX random key) and each element's flat index (dropout_mask draws the same mask).");
  m.def(
      "dropout_mask",
      [](const mx::array& seed, const std::vector<int>& shape, float keep) {
        return mlxnote::dropout_mask(seed, mx::Shape(shape.begin(), shape.end()), keep);
      },
      nb::arg("seed"), nb::arg("shape"), nb::arg("keep"),
      "The boolean keep mask (True with probability keep) that dropout(x, seed, keep)\n"
      "applies to an x of this shape.");
}
