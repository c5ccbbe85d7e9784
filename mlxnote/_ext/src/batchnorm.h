// Training-mode batch norm over every axis but the last (channels last: x viewed as (R, C)),
// float32, as MLX primitives. Forward: column means, the centred variances (two passes, as
// tf.nn.moments), then y = x * a + c in a third; backward: the column sums of dy and
// dy * (x - mean) in one pass, dx in a second. Rows split over mlxnote's pool, per-worker
// partial sums added in double. Higher derivatives, jvp and vmap go through the same math
// written with MLX ops.
#pragma once

#include "mlx/ops.h"
#include "mlx/primitives.h"

namespace mlxnote {

namespace mx = mlx::core;

// Forward inputs: x, g (C), b (C) -> y, mean (C), var (C) (biased). Backward inputs: x, g,
// mean, var, dy -> dx, dg, db.
class BatchNorm : public mx::Primitive {
 public:
  BatchNorm(mx::Stream stream, float eps, bool backward)
      : mx::Primitive(stream), eps_(eps), backward_(backward) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::array> jvp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& tangents,
                             const std::vector<int>& argnums) override;
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override;
  std::pair<std::vector<mx::array>, std::vector<int>> vmap(
      const std::vector<mx::array>& inputs, const std::vector<int>& axes) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  const char* name() const override {
    return backward_ ? "MlxnoteBatchNormGrad" : "MlxnoteBatchNorm";
  }
  bool is_equivalent(const mx::Primitive& other) const override;

 private:
  float eps_;
  bool backward_;
};

// (y, mean, var) of x (..., C) with gamma and beta (C).
std::vector<mx::array> batch_norm_train(const mx::array& x, const mx::array& g,
                                        const mx::array& b, float eps,
                                        mx::StreamOrDevice s = {});

}  // namespace mlxnote
