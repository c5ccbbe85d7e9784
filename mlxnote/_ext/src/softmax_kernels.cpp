// Vectorized rows of the masked softmax.
#include "softmax_kernels.h"

#include <cfloat>

#include "common.h"
#include "fastmath.h"
#include "lanes.h"

namespace mlxnote::kernels {

namespace {

// The masks applied to the logits in y (the logits the softmax sees).
MLXNOTE_INLINE void mask_in_place(float* __restrict y, int n, const RowMask& m) {
  const int64_t st = m.step;
  if (m.keep) {
    const uint8_t* __restrict k = m.keep;
    for (int j = 0; j < n; ++j) {
      y[j] = k[j * st] ? y[j] : -FLT_MAX;
    }
  } else if (m.add) {
    const float* __restrict a = m.add;
    for (int j = 0; j < n; ++j) {
      y[j] += a[j * st];
    }
  }
  for (int j = m.last + 1; m.last >= 0 && j < n; ++j) {
    y[j] = m.low;
  }
}

// y = x with the masks applied.
MLXNOTE_INLINE void masked(const float* __restrict x, float* __restrict y, int n,
                           const RowMask& m) {
  for (int j = 0; j < n; ++j) {
    y[j] = x[j];
  }
  mask_in_place(y, n, m);
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

namespace {

// y = exp(y - max) in one pass that also sums them; returns the sum.
MLXNOTE_INLINE float exp_sum(float* __restrict y, int n, float mx) {
  float acc[kLanes] = {};
  int j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float e = fast::exp(y[j + l] - mx);
      y[j + l] = e;
      acc[l] += e;
    }
  }
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) {
    s += acc[l];
  }
  for (; j < n; ++j) {
    y[j] = fast::exp(y[j] - mx);
    s += y[j];
  }
  return s;
}

bool any_mask(const RowMask& m) {
  return m.keep || m.add || m.last >= 0;
}

}  // namespace

MLXNOTE_CLONES
void softmax_exp_row(float* y, int n, const RowMask& m, float* stats) {
  if (any_mask(m)) {
    mask_in_place(y, n, m);
  }
  const float mx = lane_max(y, n);
  stats[0] = mx;
  stats[1] = 1.0f / exp_sum(y, n, mx);
}

MLXNOTE_CLONES
void softmax_row_again(float* y, int n, const RowMask& m, const float* stats) {
  if (any_mask(m)) {
    mask_in_place(y, n, m);
  }
  const float mx = stats[0], inv = stats[1];
  for (int j = 0; j < n; ++j) {
    y[j] = fast::exp(y[j] - mx) * inv;
  }
}

MLXNOTE_CLONES
void center_grad_row(const float* __restrict y, float* __restrict dx, int n) {
  const float r = lane_sum(dx, n);
  for (int j = 0; j < n; ++j) {
    dx[j] -= y[j] * r;
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
