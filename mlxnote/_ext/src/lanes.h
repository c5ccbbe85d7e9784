// Row reductions that keep 16 partial results (one AVX-512 register, two AVX2 ones) so
// that the compiler vectorizes them without reassociating floats; inlined into the
// per-ISA clones of the kernels that call them.
#pragma once

#include <cmath>

#include "fastmath.h"  // MLXNOTE_INLINE

namespace mlxnote::kernels {

constexpr int kLanes = 16;
// Independent banks of partials: one register's chain of dependent adds waits on the add's
// latency each step (a 512-float row's sum took 32 x 3 cycles); four interleave.
constexpr int kBanks = 4;

// The sum over j < n of term(j): kBanks x kLanes partials over blocks of 64 values, then
// one bank over blocks of 16, then the scalar tail.
template <class Term>
MLXNOTE_INLINE float lane_reduce(int n, Term term) {
  float acc[kBanks][kLanes] = {};
  int j = 0;
  for (; j + kBanks * kLanes <= n; j += kBanks * kLanes) {
    for (int b = 0; b < kBanks; ++b) {
      for (int l = 0; l < kLanes; ++l) {
        acc[b][l] += term(j + b * kLanes + l);
      }
    }
  }
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      acc[0][l] += term(j + l);
    }
  }
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) {
    s += (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
  }
  for (; j < n; ++j) {
    s += term(j);
  }
  return s;
}

MLXNOTE_INLINE float lane_max(const float* __restrict v, int n) {
  float acc[kBanks][kLanes];
  for (int b = 0; b < kBanks; ++b) {
    for (int l = 0; l < kLanes; ++l) {
      acc[b][l] = -INFINITY;
    }
  }
  int j = 0;
  for (; j + kBanks * kLanes <= n; j += kBanks * kLanes) {
    for (int b = 0; b < kBanks; ++b) {
      for (int l = 0; l < kLanes; ++l) {
        const float x = v[j + b * kLanes + l];
        acc[b][l] = x > acc[b][l] ? x : acc[b][l];
      }
    }
  }
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      acc[0][l] = v[j + l] > acc[0][l] ? v[j + l] : acc[0][l];
    }
  }
  float m = -INFINITY;
  for (int b = 0; b < kBanks; ++b) {
    for (int l = 0; l < kLanes; ++l) {
      m = acc[b][l] > m ? acc[b][l] : m;
    }
  }
  for (; j < n; ++j) {
    m = v[j] > m ? v[j] : m;
  }
  return m;
}

MLXNOTE_INLINE float lane_sum(const float* __restrict v, int n) {
  return lane_reduce(n, [v](int j) { return v[j]; });
}

MLXNOTE_INLINE float lane_dot(const float* __restrict a, const float* __restrict b, int n) {
  return lane_reduce(n, [a, b](int j) { return a[j] * b[j]; });
}

// sum (v[j] - mu)^2
MLXNOTE_INLINE float lane_centered_squares(const float* __restrict v, float mu, int n) {
  return lane_reduce(n, [v, mu](int j) {
    const float d = v[j] - mu;
    return d * d;
  });
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
