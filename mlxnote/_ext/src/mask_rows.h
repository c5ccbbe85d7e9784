// Where each row's mask starts in a mask broadcast to the logits (any strides): shared by
// the masked softmax and the fused attention. Row r of logits [..., Tq, Tk] is the row index
// over every axis but the last.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>

#include "mlx/array.h"

#include "softmax.h"
#include "softmax_kernels.h"

namespace mlxnote {

struct MaskRows {
  const uint8_t* keep = nullptr;
  const float* add = nullptr;
  std::vector<int> shape;        // leading axes of the logits
  std::vector<int64_t> strides;  // the mask's strides along them
  int64_t step = 1;              // along the last axis
  int rows_per_query = 1;        // causal: the logits' shape(-2)
  bool causal = false;
  float low = 0.0f;

  kernels::RowMask row(int64_t r) const {
    kernels::RowMask m;
    m.step = step;
    if (causal) {
      m.last = static_cast<int>(r % rows_per_query);
      m.low = low;
    }
    if (keep || add) {
      int64_t off = 0, rest = r;
      for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
        off += (rest % shape[d]) * strides[d];
        rest /= shape[d];
      }
      m.keep = keep ? keep + off : nullptr;
      m.add = add ? add + off : nullptr;
    }
    return m;
  }
};

// `logits`: the logits' shape; `mask`: null or the mask broadcast to it (evaluated).
inline MaskRows mask_rows(const SoftmaxParams& p, const mlx::core::Shape& logits,
                          const mlx::core::array* mask) {
  MaskRows mr;
  const int nd = static_cast<int>(logits.size());
  mr.causal = p.causal;
  mr.rows_per_query = nd >= 2 ? logits[nd - 2] : 1;
  mr.low = p.mask == MaskKind::Additive ? -INFINITY : -FLT_MAX;
  if (mask != nullptr) {
    for (int d = 0; d + 1 < nd; ++d) {
      mr.shape.push_back(logits[d]);
      mr.strides.push_back(mask->strides()[d]);
    }
    mr.step = mask->strides().back();
    if (p.mask == MaskKind::Bool) {
      mr.keep = mask->data<uint8_t>();
    } else {
      mr.add = mask->data<float>();
    }
  }
  return mr;
}

}  // namespace mlxnote
