// Column kernels of the batch norm (batchnorm.h): rows of c channels.
#pragma once

namespace mlxnote::kernels {

// acc[j] += x[j] over `rows` rows of c.
void column_sums(const float* x, float* acc, int rows, int c);
// One block's moments per channel, over `rows` rows of c (a block that fits L1: x is read
// twice): mean[j] the float mean, res[j] = sum (x[j] - mean[j]) (the mean's rounding, times
// rows) and sq[j] = sum (x[j] - mean[j])^2.
void column_moments(const float* x, int rows, int c, float* mean, float* res, float* sq);
// acc[j] += dy[j], acc[c + j] += dy[j] * (x[j] - mean[j]), over `rows` rows of c.
void column_grad_sums(const float* x, const float* dy, const float* mean, float* acc, int rows,
                      int c);
// y = x * a + b per channel, over `rows` rows of c.
void scale_shift(const float* x, const float* a, const float* b, float* y, int rows, int c);
// dx = dy * a + x * p + q per channel, over `rows` rows of c.
void scale_shift2(const float* x, const float* dy, const float* a, const float* p,
                  const float* q, float* dx, int rows, int c);

}  // namespace mlxnote::kernels
