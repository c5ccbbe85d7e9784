// Depthwise convolution (channels last, 1-D or 2-D) as MLX primitives: the forward (with an
// optional bias) and its two gradients, each a primitive whose vjp/jvp are the other two,
// so that grad of grad, jvp and vmap compose; and the fused backward the forward's vjp
// uses, one pass over x and dy for dx, dw and the bias gradient (its own transforms are
// those of its MLX-op form: the two gradient primitives and a sum).
//
// x (N, H, W, C), w (C*dm, KH, KW, 1) in MLX's layout (output channel c*dm + m),
// y (N, OH, OW, C*dm); 1-D convs come in with H = KH = 1. float32 only: the Python side
// casts 16-bit inputs and rounds the result once.
#pragma once

#include <optional>

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

// Which gradients the fused backward computes (its outputs, in this order).
enum DepthwiseGrads { kGradX = 1, kGradW = 2, kGradBias = 4 };

// (x, w, dy) -> the wanted ones of (dx, dw, db); dy may be strided (a broadcast cotangent
// is read in place, row by row).
class DepthwiseBackward : public mx::Primitive {
 public:
  DepthwiseBackward(mx::Stream stream, DepthwiseParams p, int wants)
      : mx::Primitive(stream), p_(p), wants_(wants) {}
  MLXNOTE_MULTI_PRIMITIVE_METHODS
  const char* name() const override {
    return "MlxnoteDepthwiseConvBackward";
  }

 private:
  DepthwiseParams p_;
  int wants_;
};

// The ops (the graph nodes): forward y = conv(x, w) (+ bias), dx = input_grad(dy, w) for an input of
// p.h x p.w, dw = weight_grad(x, dy) for a p.kh x p.kw kernel.
mx::array depthwise_forward(const mx::array& x, const mx::array& w, DepthwiseParams p,
                            mx::StreamOrDevice s = {},
                            const std::optional<mx::array>& bias = std::nullopt);
mx::array depthwise_input_grad(const mx::array& dy, const mx::array& w, DepthwiseParams p,
                               mx::StreamOrDevice s = {});
mx::array depthwise_weight_grad(const mx::array& x, const mx::array& dy, DepthwiseParams p,
                                mx::StreamOrDevice s = {});

// The fused backward: the wanted (DepthwiseGrads) of dx, dw, db of the forward y = conv(x, w).
std::vector<mx::array> depthwise_backward(const mx::array& x, const mx::array& w,
                                          const mx::array& dy, DepthwiseParams p, int wants,
                                          mx::StreamOrDevice s = {});

// The whole op from Python's arguments: 1-D (rank 3) or 2-D (rank 4) channels-last input.
mx::array depthwise_conv(const mx::array& x, const mx::array& w,
                         const std::vector<int>& strides,
                         const std::vector<std::pair<int, int>>& padding,
                         const std::vector<int>& dilations, bool flip,
                         const std::optional<mx::array>& bias = std::nullopt,
                         mx::StreamOrDevice s = {});

}  // namespace mlxnote
