// Batch norm (training statistics) and group norm, channels last, float32, as one MLX
// primitive. x (..., C) is viewed as samples of rows of C channels cut into groups of k
// adjacent channels; the statistics are per (sample, group) over the sample's rows and the
// group's channels:
// * batch norm: one sample (every axis but the last), k = 1 (a group per channel);
// * group norm: the samples are the first axis, k = C / groups.
// Forward: the means, the centred variances (two passes, as tf.nn.moments), then
// y = x * a + c in a third; backward: the per-sample column sums of dy and dy * (x - mean)
// in one pass, dx in a second. With at least two samples per thread (group norm) each task
// runs one sample's passes, which then read it from the core's cache after the first; else
// (sample, row chunk) items split over mlxnote's pool. Float partials per chunk of rows,
// added in double. Higher derivatives, jvp and vmap go through the same math in MLX ops.
#pragma once

#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "common.h"

namespace mlxnote {

namespace mx = mlx::core;

// Forward inputs: x, g (C), b (C) -> y, mean, var (biased), the statistics of shape
// (G,) for batch norm and (N, G) for group norm. Backward inputs: x, g, mean, var, dy ->
// dx, dg, db.
class ChannelNorm : public mx::Primitive {
 public:
  ChannelNorm(mx::Stream stream, float eps, bool per_sample, int group_size, bool backward)
      : mx::Primitive(stream),
        eps_(eps),
        per_sample_(per_sample),
        k_(group_size),
        backward_(backward) {}

  MLXNOTE_MULTI_PRIMITIVE_METHODS
  const char* name() const override;

 private:
  float eps_;
  bool per_sample_;
  int k_;
  bool backward_;
};

// (y, mean (C,), var (C,)) of x (..., C) over every axis but the last.
std::vector<mx::array> batch_norm_train(const mx::array& x, const mx::array& g,
                                        const mx::array& b, float eps,
                                        mx::StreamOrDevice s = {});

// (y, mean (N, G), var (N, G)) of x (N, ..., C) in `groups` groups of adjacent channels.
std::vector<mx::array> group_norm(const mx::array& x, const mx::array& g, const mx::array& b,
                                  int groups, float eps, mx::StreamOrDevice s = {});

}  // namespace mlxnote
