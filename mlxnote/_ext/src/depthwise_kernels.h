// Row kernels of the depthwise convolution (see depthwise.h for the layouts).
#pragma once

#include <cstdint>

namespace mlxnote::kernels {

struct Dims {
  int n, h, w, c;     // input
  int oh, ow;         // output
  int kh, kw;         // kernel
  int sh, sw, dh, dw, ph, pw, dm;
};

// y[n, oh, :, :] from x and the tap-major weights wt (KH*KW, C*dm).
void forward_row(const float* x, const float* wt, float* y, const Dims& d, int n, int oh);
// dx[n, ih, :, :] from dy and wt.
void input_grad_row(const float* dy, const float* wt, float* dx, const Dims& d, int n, int ih);
// part (KH*KW, C*dm) += the weight gradient of output row (n, oh).
void weight_grad_row(const float* x, const float* dy, float* part, const Dims& d, int n, int oh);

}  // namespace mlxnote::kernels
