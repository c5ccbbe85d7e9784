// Row kernels of the depthwise convolution (see depthwise.h for the layouts).
#pragma once

#include <cstdint>

namespace mlxnote::kernels {

// The dm == 1 kernels take kernels of at most this many rows (taller ones: the row kernels).
constexpr int kMaxKernelRows = 64;

struct Dims {
  int n, h, w, c;     // input
  int oh, ow;         // output
  int kh, kw;         // kernel
  int sh, sw, dh, dw, ph, pw, dm;
};

// y[n, oh, :, :] from x and the tap-major weights wt (KH*KW, C*dm), any dm.
void forward_row(const float* x, const float* wt, float* y, const Dims& d, int n, int oh);
// dx[n, ih, :, :] from dy and wt.
void input_grad_row(const float* dy, const float* wt, float* dx, const Dims& d, int n, int ih);
// part (KH*KW, C*dm) += the weight gradient of output row (n, oh).
void weight_grad_row(const float* x, const float* dy, float* part, const Dims& d, int n, int oh);

// dm == 1, register-blocked (kPositions output columns x one vector of channels accumulate
// over the taps in registers; the row kernels above reload an accumulator row per tap):
// y[n, oh, ow0:ow1, :] from x, wt and the bias (nullptr: none).
void forward_row_dm1(const float* x, const float* wt, const float* bias, float* y,
                     const Dims& d, int n, int oh, int ow0, int ow1);
// Input row (n, ih)'s share of the backward, columns [j0, j1): rows[kh] points at the dy row
// that tap row kh reaches from ih (nullptr: none; column j at rows[kh] + j * C, at least the
// columns these need). Writes dx[n, ih, j0:j1] (dx nullptr: skipped) and adds the weight
// gradient of those (row, tap) pairs over output columns [j0, j1) to part (KH*KW, C) (part
// nullptr: skipped).
void backward_row_dm1(const float* x, const float* wt, const float* const* rows, float* dx,
                      float* part, const Dims& d, int n, int ih, int j0, int j1);

}  // namespace mlxnote::kernels
