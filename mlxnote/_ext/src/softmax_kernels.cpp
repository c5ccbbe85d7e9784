// Vectorized rows of the masked softmax.
#include "softmax_kernels.h"

#include <cfloat>

#include "common.h"
#include "fastmath.h"
#include "lanes.h"

namespace mlxnote::kernels {

namespace {

// y = x with the masks applied (the logits the softmax sees).
MLXNOTE_INLINE void masked(const float* __restrict x, float* __restrict y, int n,
                           const RowMask& m) {
  const int64_t st = m.step;
  if (m.keep) {
    const uint8_t* __restrict k = m.keep;
    for (int j = 0; j < n; ++j) {
      y[j] = k[j * st] ? x[j] : -FLT_MAX;
    }
  } else if (m.add) {
    const float* __restrict a = m.add;
    for (int j = 0; j < n; ++j) {
      y[j] = x[j] + a[j * st];
    }
  } else {
    for (int j = 0; j < n; ++j) {
      y[j] = x[j];
    }
  }
  for (int j = m.last + 1; m.last >= 0 && j < n; ++j) {
    y[j] = m.low;
  }
}

}  // namespace

MLXNOTE_CLONES
void softmax_row(const float* x, float* y, int n, const RowMask& m) {
  prefetch_ahead(x, n);
  masked(x, y, n, m);
  const float mx = lane_max(y, n);
  for (int j = 0; j < n; ++j) {
    y[j] = fast::exp(y[j] - mx);
  }
  const float inv = 1.0f / lane_sum(y, n);
  for (int j = 0; j < n; ++j) {
    y[j] *= inv;
  }
}

MLXNOTE_CLONES
void softmax_grad_row(const float* y, const float* g, float* dx, int n, const RowMask& m) {
  prefetch_ahead(y, n);
  prefetch_ahead(g, n);
  const float dot = lane_dot(y, g, n);
  for (int j = 0; j < n; ++j) {
    dx[j] = y[j] * (g[j] - dot);
  }
  if (m.keep) {
    for (int j = 0; j < n; ++j) {
      dx[j] = m.keep[j * m.step] ? dx[j] : 0.0f;
    }
  }
  for (int j = m.last + 1; m.last >= 0 && j < n; ++j) {
    dx[j] = 0.0f;
  }
}

}  // namespace mlxnote::kernels
