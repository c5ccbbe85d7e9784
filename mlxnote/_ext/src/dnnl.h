// Convolutions on oneDNN as MLX primitives (N-d, channels last, strides, dilations, lo/hi
// padding, groups; float32): the forward and its two gradients, each a primitive whose
// vjp/jvp are the other two. The oneDNN calls live in libmlxnote_dnnl.so (dnnl_impl.cpp),
// which dnnl_load() opens at run time, so that _core builds and loads without oneDNN.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "common.h"
#include "dnnl_abi.h"

namespace mlxnote {

namespace mx = mlx::core;

struct DnnlParams {
  MlxnoteDnnlConv c{};
  bool operator==(const DnnlParams& o) const;
};

class DnnlConv : public Parameterized<DnnlParams, MlxnoteDnnlKind> {
 public:
  using Parameterized::Parameterized;
  MLXNOTE_PRIMITIVE_METHODS
};

// Opens libdnnl (its full path: the Python environment's lib folder) and then mlxnote's
// libmlxnote_dnnl.so; "" on success, else why not. dnnl_version(): "" when not loaded.
std::string dnnl_load(const std::string& libdnnl, const std::string& impl);
std::string dnnl_version();

// y = conv(x, w) (+ bias, added by oneDNN) for x (N, *L, C), w (O, *K, C / groups), bias
// (O,), as mx.conv_general computes it (no input dilation, no flip).
mx::array dnnl_conv(const mx::array& x, const mx::array& w, const std::vector<int>& strides,
                    const std::vector<std::pair<int, int>>& padding,
                    const std::vector<int>& dilations, int groups,
                    const std::optional<mx::array>& bias = std::nullopt,
                    mx::StreamOrDevice s = {});

// The input gradient of conv(., w) with strides/padding/dilations for an input of
// spatial size `length` (a transposed convolution): dy (N, *out, O), w (O, *K, C) -> (N,
// *length, C); groups 1; plus `bias` (C,) when given.
mx::array dnnl_conv_input_grad(const mx::array& dy, const mx::array& w,
                               const std::vector<int>& length, const std::vector<int>& strides,
                               const std::vector<std::pair<int, int>>& padding,
                               const std::vector<int>& dilations,
                               const std::optional<mx::array>& bias = std::nullopt,
                               mx::StreamOrDevice s = {});

}  // namespace mlxnote
