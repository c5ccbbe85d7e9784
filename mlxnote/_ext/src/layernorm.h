// Layer norm over the last axis as MLX primitives, float32: the forward (y, and each row's
// mean and 1 / sqrt(var + eps) for the backward) reads x once into cache per row; the
// backward gives dx, dgamma and dbeta in one pass (per-thread partial sums of dgamma and
// dbeta, added in double). Rows over mlxnote's pool. Higher-order derivatives, jvp and
// vmap go through the same math written with MLX ops.
#pragma once

#include <optional>

#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "common.h"

namespace mlxnote {

namespace mx = mlx::core;

struct LayerNormParams {
  bool has_g = false, has_b = false;
  float eps = 1e-5f;
  bool operator==(const LayerNormParams& o) const {
    return has_g == o.has_g && has_b == o.has_b && eps == o.eps;
  }
};

// Forward inputs: x [, g] [, b] -> y, mean, rstd. Backward inputs: x [, g], mean, rstd, dy
// -> dx [, dg] [, db].
class LayerNorm : public mx::Primitive {
 public:
  LayerNorm(mx::Stream stream, LayerNormParams p, bool backward)
      : mx::Primitive(stream), p_(p), backward_(backward) {}

  MLXNOTE_MULTI_PRIMITIVE_METHODS
  const char* name() const override {
    return backward_ ? "MlxnoteLayerNormGrad" : "MlxnoteLayerNorm";
  }

 private:
  LayerNormParams p_;
  bool backward_;
};

mx::array layer_norm(const mx::array& x, const std::optional<mx::array>& g,
                     const std::optional<mx::array>& b, float eps, mx::StreamOrDevice s = {});

}  // namespace mlxnote
