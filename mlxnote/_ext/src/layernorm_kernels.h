// Row kernels of the layer norm (layernorm.h): one row of n features.
#pragma once

namespace mlxnote::kernels {

// y = (x - mean) * rstd [* g] [+ b]; writes the row's mean and rstd = 1 / sqrt(var + eps)
// (two passes over the row: the centred variance).
void layer_norm_row(const float* x, const float* g, const float* b, float eps, float* y,
                    float* mean, float* rstd, int n);
// dx = (dy*g - mean(dy*g) - xhat * mean(dy*g*xhat)) * rstd, and adds dy * xhat to dg and
// dy to db (either may be null).
void layer_norm_grad_row(const float* x, const float* g, const float* dy, float mean,
                         float rstd, float* dx, float* dg, float* db, int n);

}  // namespace mlxnote::kernels
