// Vectorized column passes of the batch norm (contiguous along the channels).
#include "batchnorm_kernels.h"

#include "common.h"

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

MLXNOTE_CLONES
void column_moments(const float* __restrict x, int rows, int c, float* __restrict mean,
                    float* __restrict res, float* __restrict sq) {
  for (int j = 0; j < c; ++j) {
    mean[j] = 0.0f;
    res[j] = 0.0f;
    sq[j] = 0.0f;
  }
  column_sums(x, mean, rows, c);
  const float inv = 1.0f / static_cast<float>(rows);
  for (int j = 0; j < c; ++j) {
    mean[j] *= inv;
  }
  for (int r = 0; r < rows; ++r) {
    const float* __restrict row = x + static_cast<long>(r) * c;
    for (int j = 0; j < c; ++j) {
      const float d = row[j] - mean[j];
      res[j] += d;
      sq[j] += d * d;
    }
  }
}

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
