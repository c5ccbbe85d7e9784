// Row reductions that keep 16 partial results (one AVX-512 register, two AVX2 ones) so
// that the compiler vectorizes them without reassociating floats; inlined into the
// per-ISA clones of the kernels that call them.
#pragma once

#include <cmath>

#include "fastmath.h"  // MLXNOTE_INLINE

namespace mlxnote::kernels {

constexpr int kLanes = 16;

MLXNOTE_INLINE float lane_max(const float* __restrict v, int n) {
  float acc[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    acc[l] = -INFINITY;
  }
  int j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      acc[l] = v[j + l] > acc[l] ? v[j + l] : acc[l];
    }
  }
  float m = -INFINITY;
  for (int l = 0; l < kLanes; ++l) {
    m = acc[l] > m ? acc[l] : m;
  }
  for (; j < n; ++j) {
    m = v[j] > m ? v[j] : m;
  }
  return m;
}

MLXNOTE_INLINE float lane_sum(const float* __restrict v, int n) {
  float acc[kLanes] = {};
  int j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      acc[l] += v[j + l];
    }
  }
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) {
    s += acc[l];
  }
  for (; j < n; ++j) {
    s += v[j];
  }
  return s;
}

MLXNOTE_INLINE float lane_dot(const float* __restrict a, const float* __restrict b, int n) {
  float acc[kLanes] = {};
  int j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      acc[l] += a[j + l] * b[j + l];
    }
  }
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) {
    s += acc[l];
  }
  for (; j < n; ++j) {
    s += a[j] * b[j];
  }
  return s;
}

// sum (v[j] - mu)^2, the same partials.
MLXNOTE_INLINE float lane_centered_squares(const float* __restrict v, float mu, int n) {
  float acc[kLanes] = {};
  int j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float d = v[j + l] - mu;
      acc[l] += d * d;
    }
  }
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) {
    s += acc[l];
  }
  for (; j < n; ++j) {
    const float d = v[j] - mu;
    s += d * d;
  }
  return s;
}

// Rows of n floats back to back: fetching the one two rows ahead while this one computes
// halves the time of a row kernel whose input comes from memory (softmax of 8x8x256x256:
// 6.6 -> 2.8 ms).
MLXNOTE_INLINE void prefetch_ahead(const float* row, int n) {
  for (int j = 0; j < n; j += 16) {
    __builtin_prefetch(row + 2 * n + j);
  }
}

}  // namespace mlxnote::kernels
