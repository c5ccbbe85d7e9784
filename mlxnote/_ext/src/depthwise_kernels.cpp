// The depthwise loops, one output row at a time, vectorized over channels. Each row
// function is compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at load time
// (target_clones); elsewhere (arm64: NEON is baseline) it is compiled once.
#include "depthwise_kernels.h"

#include "common.h"

#include <algorithm>
#include <cstring>


namespace mlxnote::kernels {

namespace {

// acc[j] += a[j / dm] * b[j] for j < c * dm.
inline void madd(float* __restrict acc, const float* __restrict a,
                 const float* __restrict b, int c, int dm) {
  if (dm == 1) {
    for (int j = 0; j < c; ++j) {
      acc[j] += a[j] * b[j];
    }
    return;
  }
  for (int i = 0; i < c; ++i) {
    const float ai = a[i];
    float* __restrict o = acc + i * dm;
    const float* __restrict bi = b + i * dm;
    for (int m = 0; m < dm; ++m) {
      o[m] += ai * bi[m];
    }
  }
}

// acc[i] += sum_m a[i * dm + m] * b[i * dm + m] for i < c.
inline void madd_reduce(float* __restrict acc, const float* __restrict a,
                        const float* __restrict b, int c, int dm) {
  if (dm == 1) {
    madd(acc, a, b, c, 1);
    return;
  }
  for (int i = 0; i < c; ++i) {
    float s = 0.0f;
    for (int m = 0; m < dm; ++m) {
      s += a[i * dm + m] * b[i * dm + m];
    }
    acc[i] += s;
  }
}

// The output columns ow with 0 <= ow * s + off < w: [first_col, end_col).
inline int first_col(int off, int s) {
  return off >= 0 ? 0 : (-off + s - 1) / s;
}

inline int end_col(int off, int s, int w, int ow) {
  const int last = w - 1 - off;
  return last < 0 ? 0 : std::min(ow, last / s + 1);
}

}  // namespace

MLXNOTE_CLONES
void forward_row(const float* x, const float* wt, float* y, const Dims& d, int n, int oh) {
  const int cm = d.c * d.dm;
  float* row = y + (static_cast<int64_t>(n) * d.oh + oh) * d.ow * cm;
  std::memset(row, 0, sizeof(float) * d.ow * cm);
  const float* xn = x + static_cast<int64_t>(n) * d.h * d.w * d.c;
  for (int kh = 0; kh < d.kh; ++kh) {
    const int ih = oh * d.sh + kh * d.dh - d.ph;
    if (ih < 0 || ih >= d.h) {
      continue;
    }
    for (int kw = 0; kw < d.kw; ++kw) {
      const float* wk = wt + (kh * d.kw + kw) * cm;
      const int off = kw * d.dw - d.pw;
      // Output columns whose input column ow * sw + off lies inside [0, w).
      const int lo = first_col(off, d.sw);
      const int hi = end_col(off, d.sw, d.w, d.ow);
      for (int ow = lo; ow < hi; ++ow) {
        const float* xi = xn + (static_cast<int64_t>(ih) * d.w + ow * d.sw + off) * d.c;
        madd(row + static_cast<int64_t>(ow) * cm, xi, wk, d.c, d.dm);
      }
    }
  }
}

MLXNOTE_CLONES
void input_grad_row(const float* dy, const float* wt, float* dx, const Dims& d, int n,
                    int ih) {
  const int cm = d.c * d.dm;
  float* row = dx + (static_cast<int64_t>(n) * d.h + ih) * d.w * d.c;
  std::memset(row, 0, sizeof(float) * d.w * d.c);
  const float* dyn = dy + static_cast<int64_t>(n) * d.oh * d.ow * cm;
  for (int kh = 0; kh < d.kh; ++kh) {
    const int t = ih + d.ph - kh * d.dh;
    if (t < 0 || t % d.sh != 0 || t / d.sh >= d.oh) {
      continue;
    }
    const int oh = t / d.sh;
    for (int kw = 0; kw < d.kw; ++kw) {
      const float* wk = wt + (kh * d.kw + kw) * cm;
      const int off = d.pw - kw * d.dw;  // ow * sw = iw + off
      for (int iw = 0; iw < d.w; ++iw) {
        const int u = iw + off;
        if (u < 0 || u % d.sw != 0 || u / d.sw >= d.ow) {
          continue;
        }
        const float* g = dyn + (static_cast<int64_t>(oh) * d.ow + u / d.sw) * cm;
        madd_reduce(row + static_cast<int64_t>(iw) * d.c, g, wk, d.c, d.dm);
      }
    }
  }
}

MLXNOTE_CLONES
void weight_grad_row(const float* x, const float* dy, float* part, const Dims& d, int n,
                     int oh) {
  const int cm = d.c * d.dm;
  const float* xn = x + static_cast<int64_t>(n) * d.h * d.w * d.c;
  const float* g = dy + (static_cast<int64_t>(n) * d.oh + oh) * d.ow * cm;
  for (int kh = 0; kh < d.kh; ++kh) {
    const int ih = oh * d.sh + kh * d.dh - d.ph;
    if (ih < 0 || ih >= d.h) {
      continue;
    }
    for (int kw = 0; kw < d.kw; ++kw) {
      float* acc = part + (kh * d.kw + kw) * cm;
      const int off = kw * d.dw - d.pw;
      const int lo = first_col(off, d.sw);
      const int hi = end_col(off, d.sw, d.w, d.ow);
      for (int ow = lo; ow < hi; ++ow) {
        const float* xi = xn + (static_cast<int64_t>(ih) * d.w + ow * d.sw + off) * d.c;
        madd(acc, xi, g + static_cast<int64_t>(ow) * cm, d.c, d.dm);
      }
    }
  }
}

}  // namespace mlxnote::kernels
