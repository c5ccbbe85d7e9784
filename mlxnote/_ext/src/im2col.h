// im2col and col2im (channels last, 1-D to 3-D) as MLX primitives, each the other's
// transpose (vjp), both linear (jvp), so that the GEMM formulations of mlxnote.kernels.conv
// differentiate to any order.
//
// Geometry, per spatial dimension j: the input position of output position o and tap k is
// i = o * s[j] + k * d[j] - p[j] (p may be negative). im2col reads x (N, *L, C) and writes
// cols (N, *O, *K, cg), channels [c0, c0 + cg) of x, zeros where i falls outside [0, L);
// col2im sums cols (N, *O, *K, cg) back onto (N, *L, cg). Unused dimensions have
// L = O = K = s = d = 1, p = 0.
#pragma once

#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "common.h"

namespace mlxnote {

namespace mx = mlx::core;

struct Geometry {
  int nd = 1;  // spatial rank of the arrays (1 to 3)
  int l[3] = {1, 1, 1}, o[3] = {1, 1, 1}, k[3] = {1, 1, 1};
  int s[3] = {1, 1, 1}, d[3] = {1, 1, 1}, p[3] = {0, 0, 0};
  int c = 1;       // channels of x
  int c0 = 0;      // first channel im2col reads
  int cg = 1;      // channels im2col reads (col2im's channels)
  bool operator==(const Geometry& g) const;
};

enum class ColsKind { Im2Col, Col2Im };

class Cols : public Parameterized<Geometry, ColsKind> {
 public:
  using Parameterized::Parameterized;
  MLXNOTE_PRIMITIVE_METHODS
};

mx::array im2col(const mx::array& x, const Geometry& g, mx::StreamOrDevice s = {});
mx::array col2im(const mx::array& cols, const Geometry& g, mx::StreamOrDevice s = {});

}  // namespace mlxnote
