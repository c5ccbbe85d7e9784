// The recurrences of mlxnote.kernels.scan as MLX primitives: the whole sequence in one node,
// forward and backward, with the per-step matmuls through the process's BLAS and the gate
// arithmetic fused, for tanh/sigmoid gates (Keras's defaults) in float32.
//
// Layouts as scan.py: xp (B, T, k*H) the input projections (bias included), wh (H, k*H) the
// recurrent kernel, gate blocks in Note's order (GRU r, z, h; LSTM i, f, o, c), h0/c0 (B, H),
// b_U (k*H) the reset-after GRU's recurrent bias, mask (B, T) boolean (false: the step is
// skipped, its states carry over; it gets no gradient and passes the state gradients).
// Forward inputs: xp, wh, h0, then c0 (LSTM) or b_U (reset-after GRU), then the mask.
// Forward outputs: hseq (B, T, H), then what the backward needs: LSTM cseq (B, T, H) and the
// activated gates (B, T, 4H); GRU the activated gates [r, z, hh] (B, T, 3H) and r*h (B, T, H)
// (reset-after: h @ U + b_U's h block). The backward is a second primitive (first-order
// gradients only): dxp, dwh, dh0, then dc0 (LSTM) or db_U (reset-after GRU).
#pragma once

#include <optional>

#include "mlx/ops.h"
#include "mlx/primitives.h"

namespace mlxnote {

namespace mx = mlx::core;

enum class RnnKind { Rnn, Gru, GruAfter, Lstm };

struct RnnParams {
  RnnKind kind;
  int b, t, h;
  bool masked = false;
  bool operator==(const RnnParams& o) const {
    return kind == o.kind && b == o.b && t == o.t && h == o.h && masked == o.masked;
  }
};

class RnnScan : public mx::Primitive {
 public:
  RnnScan(mx::Stream stream, RnnParams p, bool backward)
      : mx::Primitive(stream), p_(p), backward_(backward) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  const char* name() const override {
    return backward_ ? "MlxnoteRnnScanGrad" : "MlxnoteRnnScan";
  }
  bool is_equivalent(const mx::Primitive& other) const override;

 private:
  RnnParams p_;
  bool backward_;
};

// Forward: xp, wh, h0, `state` (c0 for the LSTM, b_U for the reset-after GRU, else
// unused) and an optional mask -> the outputs above.
std::vector<mx::array> rnn_scan(RnnKind kind, const mx::array& xp, const mx::array& wh,
                                const mx::array& h0, const std::optional<mx::array>& state,
                                const std::optional<mx::array>& mask,
                                mx::StreamOrDevice s = {});

}  // namespace mlxnote
