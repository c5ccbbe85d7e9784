// Softmax attention as MLX primitives, fused on the CPU:
//   out = softmax(scale * q @ k^T masked) @ v
// one head (or a block of its queries) at a time on each of mlxnote's pool threads, the
// logits only in that thread's cache: they are never written to memory. The forward also
// returns each row's softmax statistics (max, 1 / sum); the backward recomputes the weights
// from them (bit for bit) and gives dq, dk, dv, the five products per head on one thread
// each (blas::sgemm_serial). Each row of the logits' gradient is centered (its rounding along
// the ones vector removed: the exact gradient is orthogonal to it): the gradient of a shift
// of every key, exactly 0, came out 5x smaller than the plain composition's (rounding).
//
// Shapes: q [B, H, Tq, D], k [B, H, Tk, D], v [B, H, Tk, Dv], float32, any strides with a
// contiguous last axis (a head of [B, T, H, D] transposed is read in place; a broadcast
// head too); mask (optional) broadcast to [B, H, Tq, Tk]: boolean (true = attend) or
// additive, the masked softmax's rules (softmax.h), causal top-left aligned.
// out [B, H, Tq, Dv], stats [B, H, Tq, 2].
#pragma once

#include <optional>

#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "common.h"
#include "softmax.h"

namespace mlxnote {

namespace mx = mlx::core;

struct AttentionParams {
  SoftmaxParams softmax;
  float scale = 1.0f;
  bool operator==(const AttentionParams& o) const {
    return softmax == o.softmax && scale == o.scale;
  }
};

// Forward: q, k, v [, mask] -> out, stats. Backward: q, k, v [, mask], stats, dout ->
// dq, dk, dv.
class Attention : public mx::Primitive {
 public:
  Attention(mx::Stream stream, AttentionParams p, bool backward)
      : mx::Primitive(stream), p_(p), backward_(backward) {}
  MLXNOTE_MULTI_PRIMITIVE_METHODS
  const char* name() const override {
    return backward_ ? "MlxnoteAttentionGrad" : "MlxnoteAttention";
  }

 private:
  AttentionParams p_;
  bool backward_;
};

// {out, stats}; the fused kernel runs where blas::serial_available(), else its heads one
// after the other on the calling thread (each GEMM then threaded by the BLAS).
std::vector<mx::array> fused_attention(const mx::array& q, const mx::array& k,
                                       const mx::array& v, float scale,
                                       const std::optional<mx::array>& mask, bool causal,
                                       mx::StreamOrDevice s = {});

}  // namespace mlxnote
