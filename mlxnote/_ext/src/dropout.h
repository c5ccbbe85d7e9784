// Dropout as an MLX primitive: y = x * keep_mask / keep in one pass, the mask drawn from a
// counter-based hash of a seed (a uint32 (2,) array, e.g. an MLX random key) and each
// element's flat index, so the backward (dy * keep_mask / keep, the same primitive on dy)
// and a separate draw of the mask alone (kind Mask) regenerate it exactly. Elements over
// mlxnote's pool, float32.
//
// Hash: splitmix64 of seed + (index + 1) * 0x9E3779B97F4A7C15 (Steele et al., 2014); an
// element is kept when the hash's high 32 bits are below keep * 2^32.
#pragma once

#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "common.h"

namespace mlxnote {

namespace mx = mlx::core;

struct DropoutParams {
  float keep = 1.0f;
  mx::Shape shape;  // kind Mask: the mask's shape
  bool operator==(const DropoutParams& o) const { return keep == o.keep && shape == o.shape; }
};

enum class DropoutKind { Apply, Mask };

// Apply: inputs x (float32), seed (uint32 (2,)) -> x * mask / keep. Mask: input seed ->
// the boolean keep mask of params.shape.
class Dropout : public Parameterized<DropoutParams, DropoutKind> {
 public:
  using Parameterized::Parameterized;
  MLXNOTE_PRIMITIVE_METHODS
};

mx::array dropout(const mx::array& x, const mx::array& seed, float keep,
                  mx::StreamOrDevice s = {});
mx::array dropout_mask(const mx::array& seed, const mx::Shape& shape, float keep,
                       mx::StreamOrDevice s = {});

}  // namespace mlxnote
