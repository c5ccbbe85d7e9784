// Column kernels of the batch norm (batchnorm.h): rows of c channels.
#pragma once

namespace mlxnote::kernels {

// acc[j] += x[j] - shift[j] (shift null: 0) squared or not, over `rows` rows of c.
void column_sums(const float* x, const float* shift, bool square, float* acc, int rows,
                 int c);
// acc[j] += dy[j], acc[c + j] += dy[j] * (x[j] - mean[j]), over `rows` rows of c.
void column_grad_sums(const float* x, const float* dy, const float* mean, float* acc, int rows,
                      int c);
// y = x * a + b per channel, over `rows` rows of c.
void scale_shift(const float* x, const float* a, const float* b, float* y, int rows, int c);
// dx = dy * a + x * p + q per channel, over `rows` rows of c.
void scale_shift2(const float* x, const float* dy, const float* a, const float* p,
                  const float* q, float* dx, int rows, int c);

}  // namespace mlxnote::kernels
