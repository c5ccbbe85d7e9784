// The masked softmax of attention as MLX primitives: y = softmax(x masked) over the last
// axis, and its gradient dx = y * (g - sum(g * y)), each one pass per row (three and one
// over the row's values in cache), rows over mlxnote's pool, float32.
//
// Masks (broadcast to x's shape by the caller: any strides): boolean (true = attend; a
// masked logit becomes float32's lowest value, as a where() with the dtype's lowest value
// does, so a fully masked row gives uniform weights) or additive (added to the logit).
// causal masks key j > query i (top-left aligned; i is the index along x's second-last
// axis) with the lowest value, or -inf together with an additive mask (the way
// mlxnote.kernels.attention merges such masks). Masked logits get no gradient.
#pragma once

#include <optional>

#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "common.h"

namespace mlxnote {

namespace mx = mlx::core;

enum class MaskKind { None, Bool, Additive };

struct SoftmaxParams {
  MaskKind mask = MaskKind::None;
  bool causal = false;
  bool operator==(const SoftmaxParams& o) const {
    return mask == o.mask && causal == o.causal;
  }
};

enum class SoftmaxKind { Forward, Backward };

// Forward: inputs x [, mask]. Backward: inputs y, g [, mask] -> dx.
class Softmax : public Parameterized<SoftmaxParams, SoftmaxKind> {
 public:
  using Parameterized::Parameterized;
  MLXNOTE_PRIMITIVE_METHODS
};

mx::array masked_softmax(const mx::array& x, const std::optional<mx::array>& mask,
                         bool causal, mx::StreamOrDevice s = {});

}  // namespace mlxnote
