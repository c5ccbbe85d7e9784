// Depthwise convolution (channels last, 1-D or 2-D) as MLX primitives: the forward and its
// two gradients, each a primitive whose vjp/jvp are the other two, so that grad of grad,
// jvp and vmap compose.
//
// x (N, H, W, C), w (C*dm, KH, KW, 1) in MLX's layout (output channel c*dm + m),
// y (N, OH, OW, C*dm); 1-D convs come in with H = KH = 1. float32 only: the Python side
// casts 16-bit inputs and rounds the result once.
#pragma once

#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "common.h"

namespace mlxnote {

namespace mx = mlx::core;

struct DepthwiseParams {
  int sh = 1, sw = 1;        // strides
  int dh = 1, dw = 1;        // kernel dilations
  int ph = 0, pw = 0;        // padding before (the padding after follows from the sizes)
  int oh = 0, ow = 0;        // output size of the forward conv
  int h = 0, w = 0;          // input size of the forward conv
  int kh = 1, kw = 1;        // kernel size
  int dm = 1;                // depth multiplier
  bool flip = false;         // convolution (flipped taps) instead of cross-correlation

  bool operator==(const DepthwiseParams& o) const;
};

enum class DepthwiseKind { Forward, InputGrad, WeightGrad };

class Depthwise : public Parameterized<DepthwiseParams, DepthwiseKind> {
 public:
  using Parameterized::Parameterized;
  MLXNOTE_PRIMITIVE_METHODS
};

// The ops (the graph nodes): forward y = conv(x, w), dx = input_grad(dy, w) for an input of
// p.h x p.w, dw = weight_grad(x, dy) for a p.kh x p.kw kernel.
mx::array depthwise_forward(const mx::array& x, const mx::array& w, DepthwiseParams p,
                            mx::StreamOrDevice s = {});
mx::array depthwise_input_grad(const mx::array& dy, const mx::array& w, DepthwiseParams p,
                               mx::StreamOrDevice s = {});
mx::array depthwise_weight_grad(const mx::array& x, const mx::array& dy, DepthwiseParams p,
                                mx::StreamOrDevice s = {});

// The whole op from Python's arguments: 1-D (rank 3) or 2-D (rank 4) channels-last input.
mx::array depthwise_conv(const mx::array& x, const mx::array& w,
                         const std::vector<int>& strides,
                         const std::vector<std::pair<int, int>>& padding,
                         const std::vector<int>& dilations, bool flip,
                         mx::StreamOrDevice s = {});

}  // namespace mlxnote
