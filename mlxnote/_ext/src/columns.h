// Two passes over a channels-last tensor that MLX's CPU backend runs on one thread, on
// mlxnote's pool, reading any layout (a broadcast cotangent, the gradient of a sum, is read
// in place): a row-contiguous copy, and the sums of the last axis' columns (a bias
// gradient).
#pragma once

#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "common.h"

namespace mlxnote {

namespace mx = mlx::core;

enum class ColumnsKind { Contiguous, Sums };

struct ColumnsParams {
  bool operator==(const ColumnsParams&) const {
    return true;
  }
};

class Columns : public Parameterized<ColumnsParams, ColumnsKind> {
 public:
  using Parameterized::Parameterized;
  MLXNOTE_PRIMITIVE_METHODS
};

// a (any layout, float32) as a row-contiguous array (its own buffer when it is one already).
mx::array contiguous_rows(const mx::array& a, mx::StreamOrDevice s = {});
// (..., C) -> (C,): every other axis summed, in float32 per chunk of 64 rows and float64
// over chunks (one float32 sum over 2^16 rows is off by 3.6e-4).
mx::array column_sums(const mx::array& a, mx::StreamOrDevice s = {});

// n floats from `from`, `stride` apart (0: one value broadcast), into `to`.
void copy_strided(const float* from, int64_t stride, int64_t n, float* to);

// The same sums of `rows` dense rows of c floats into out (c), on the pool (inside a kernel).
void column_totals(const float* x, int64_t rows, int64_t c, float* out);

}  // namespace mlxnote
