// Sums of per-tap products over the rows of two flattened grids (a conv's weight gradient,
// one GEMM per tap), on mlxnote's pool: each thread takes groups of row chunks and runs
// every tap's GEMM on them by itself (one-thread BLAS), and the per-group partials are added
// in order (the groups do not depend on the thread count: the same sum on any).
#pragma once

#include <utility>
#include <vector>

#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "common.h"

namespace mlxnote {

namespace mx = mlx::core;

struct TapsParams {
  std::vector<std::pair<int, int>> taps;  // per tap: its phase (an index into xs), row offset
  int rows = 0;                           // the rows of dy summed over
  bool operator==(const TapsParams& o) const {
    return taps == o.taps && rows == o.rows;
  }
};

class TapProducts : public Parameterized<TapsParams, int> {
 public:
  using Parameterized::Parameterized;
  MLXNOTE_PRIMITIVE_METHODS
};

// dy (R, co) and the phases xs[p] (R_p, ci) -> (co, taps, ci): out[o, t, i] = the sum over
// r < rows of xs[ph_t][r + offset_t, i] * dy[r, o] (every r + offset_t < R_p).
mx::array tap_products(const mx::array& dy, const std::vector<mx::array>& xs,
                       const std::vector<std::pair<int, int>>& taps, int rows,
                       mx::StreamOrDevice s = {});

}  // namespace mlxnote
