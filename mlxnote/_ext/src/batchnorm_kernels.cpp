// Vectorized column passes of the batch norm (contiguous along the channels).
#include "batchnorm_kernels.h"

#include "common.h"
#include "native_vector.h"

namespace mlxnote::kernels {

MLXNOTE_CLONES
void column_sums(const float* __restrict x, float* __restrict acc, int rows, int c) {
  for (int r = 0; r < rows; ++r) {
    const float* __restrict row = x + static_cast<long>(r) * c;
    for (int j = 0; j < c; ++j) {
      acc[j] += row[j];
    }
  }
}

namespace {

// column_moments' register blocks: kBlock vectors of channels, each with its sum, residual
// and squares accumulators in registers over the block's rows (4 independent chains per
// accumulator hide the add's latency). Without them GCC loaded and stored each channel's
// accumulators for every row (and did not vectorize the centred pass for AVX2 cleanly).
constexpr int kBlock = 4;

template <class V, int B, bool Full>
MLXNOTE_INLINE void moments_block(const float* __restrict x, int rows, int c, int b, float inv,
                                  float* mean, float* res, float* sq) {
  constexpr int L = kLanes<V>;
  V m[B] = {}, e[B] = {}, q[B] = {};
  for (int r = 0; r < rows; ++r) {
    const float* row = x + static_cast<long>(r) * c;
#pragma GCC unroll 4
    for (int k = 0; k < B; ++k) {
      m[k] += load<V, Full>(row + k * L, b);
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < B; ++k) {
    m[k] *= inv;
  }
  for (int r = 0; r < rows; ++r) {
    const float* row = x + static_cast<long>(r) * c;
#pragma GCC unroll 4
    for (int k = 0; k < B; ++k) {
      const V d = load<V, Full>(row + k * L, b) - m[k];
      e[k] += d;
      q[k] += d * d;
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < B; ++k) {
    store<V, Full>(mean + k * L, m[k], b);
    store<V, Full>(res + k * L, e[k], b);
    store<V, Full>(sq + k * L, q[k], b);
  }
}

template <class V>
MLXNOTE_INLINE void moments(const float* x, int rows, int c, float* mean, float* res, float* sq) {
  constexpr int L = kLanes<V>;
  const float inv = 1.0f / static_cast<float>(rows);
  int j = 0;
  for (; j + kBlock * L <= c; j += kBlock * L) {
    moments_block<V, kBlock, true>(x + j, rows, c, L, inv, mean + j, res + j, sq + j);
  }
  for (; j + L <= c; j += L) {
    moments_block<V, 1, true>(x + j, rows, c, L, inv, mean + j, res + j, sq + j);
  }
  if (j < c) {
    moments_block<V, 1, false>(x + j, rows, c, c - j, inv, mean + j, res + j, sq + j);
  }
}

}  // namespace

MLXNOTE_NATIVE_VECTOR(column_moments, moments,
                      (const float* x, int rows, int c, float* mean, float* res, float* sq),
                      (x, rows, c, mean, res, sq))

MLXNOTE_CLONES
void column_grad_sums(const float* __restrict x, const float* __restrict dy,
                      const float* __restrict mean, float* __restrict acc, int rows, int c) {
  float* __restrict s1 = acc;
  float* __restrict s2 = acc + c;
  for (int r = 0; r < rows; ++r) {
    const float* __restrict xr = x + static_cast<long>(r) * c;
    const float* __restrict dr = dy + static_cast<long>(r) * c;
    for (int j = 0; j < c; ++j) {
      s1[j] += dr[j];
      s2[j] += dr[j] * (xr[j] - mean[j]);
    }
  }
}

MLXNOTE_CLONES
void scale_shift(const float* __restrict x, const float* __restrict a,
                 const float* __restrict b, float* __restrict y, int rows, int c) {
  for (int r = 0; r < rows; ++r) {
    const long o = static_cast<long>(r) * c;
    for (int j = 0; j < c; ++j) {
      y[o + j] = x[o + j] * a[j] + b[j];
    }
  }
}

MLXNOTE_CLONES
void scale_shift2(const float* __restrict x, const float* __restrict dy,
                  const float* __restrict a, const float* __restrict p,
                  const float* __restrict q, float* __restrict dx, int rows, int c) {
  for (int r = 0; r < rows; ++r) {
    const long o = static_cast<long>(r) * c;
    for (int j = 0; j < c; ++j) {
      dx[o + j] = dy[o + j] * a[j] + x[o + j] * p[j] + q[j];
    }
  }
}

}  // namespace mlxnote::kernels
