// The depthwise loops, one output row at a time, vectorized over channels. The row kernels
// are compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at load time
// (target_clones); the register-blocked dm == 1 kernels are written for the CPU's native
// vector and instantiated once per ISA (MLXNOTE_NATIVE_VECTOR, at the end). Elsewhere (arm64:
// NEON is baseline) each is compiled once.
#include "depthwise_kernels.h"

#include "common.h"
#include "fastmath.h"  // MLXNOTE_INLINE
#include "native_vector.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>


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

namespace {

// A block of channels is one native vector of floats (native_vector.h). (A 16-float vector
// on AVX2 is not a register type: GCC kept every accumulator on the stack, 14.9 ms for a
// 16x64x64x64 forward on one core against 5.4 with native ones.)
constexpr int kPositions = 4;
constexpr int kMaxTaps = kMaxKernelRows;

// The kernel's columns as offsets: output column j reads input column j * s + off[kw]
// (forward), or input column j is reached from output column (j + off[kw]) / s (input
// gradient). The interior [lo, hi): columns where every tap lands inside without a check.
struct Columns {
  int lo, hi;
};

MLXNOTE_INLINE Columns forward_interior(const Dims& d) {
  int lo = 0, hi = d.ow;
  for (int kw = 0; kw < d.kw; ++kw) {
    const int off = kw * d.dw - d.pw;
    lo = std::max(lo, first_col(off, d.sw));
    hi = std::min(hi, end_col(off, d.sw, d.w, d.ow));
  }
  return {lo, std::max(lo, hi)};
}

// The input gradient's interior, stride 1 only (u = iw + pw - kw * dw in [0, ow) for all kw).
MLXNOTE_INLINE Columns input_grad_interior(const Dims& d) {
  if (d.sw != 1) {
    return {0, 0};
  }
  int lo = 0, hi = d.w;
  for (int kw = 0; kw < d.kw; ++kw) {
    const int off = d.pw - kw * d.dw;
    lo = std::max(lo, -off);
    hi = std::min(hi, d.ow - off);
  }
  return {std::min(lo, d.w), std::max(std::min(lo, d.w), hi)};
}

// The forward of output column ow, channels [cb, cb + b): `xr[kh]` the input rows of the
// tap rows (nullptr: in the padding), with checks (edge columns).
template <class V, bool Full>
MLXNOTE_INLINE void forward_one(const float* const* xr, const float* wt, const float* bias,
                                float* row, const Dims& d, int ow, int cb, int b) {
  const int c = d.c;
  V acc = bias != nullptr ? load<V, Full>(bias + cb, b) : V{};
  for (int kh = 0; kh < d.kh; ++kh) {
    if (xr[kh] == nullptr) {
      continue;
    }
    for (int kw = 0; kw < d.kw; ++kw) {
      const int iw = ow * d.sw + kw * d.dw - d.pw;
      if (iw >= 0 && iw < d.w) {
        acc += load<V, Full>(xr[kh] + static_cast<int64_t>(iw) * c + cb, b) *
               load<V, Full>(wt + (kh * d.kw + kw) * c + cb, b);
      }
    }
  }
  store<V, Full>(row + static_cast<int64_t>(ow) * c + cb, acc, b);
}

// kPositions interior columns from ow: no checks, the accumulators in registers.
template <class V, bool Full>
MLXNOTE_INLINE void forward_block(const float* const* xr, const float* wt, const float* bias,
                                  float* row, const Dims& d, int ow, int cb, int b) {
  const int c = d.c;
  const V init = bias != nullptr ? load<V, Full>(bias + cb, b) : V{};
  V acc[kPositions];
  for (int p = 0; p < kPositions; ++p) {
    acc[p] = init;
  }
  for (int kh = 0; kh < d.kh; ++kh) {
    if (xr[kh] == nullptr) {
      continue;
    }
    for (int kw = 0; kw < d.kw; ++kw) {
      const V wv = load<V, Full>(wt + (kh * d.kw + kw) * c + cb, b);
      const float* at = xr[kh] + (static_cast<int64_t>(ow) * d.sw + kw * d.dw - d.pw) * c + cb;
      for (int p = 0; p < kPositions; ++p) {
        acc[p] += load<V, Full>(at + static_cast<int64_t>(p) * d.sw * c, b) * wv;
      }
    }
  }
  for (int p = 0; p < kPositions; ++p) {
    store<V, Full>(row + static_cast<int64_t>(ow + p) * c + cb, acc[p], b);
  }
}

// The input gradient of input column iw, channels [cb, cb + b), from the dy rows of its
// taps, with checks (edge columns, strides > 1).
template <class V, bool Full>
MLXNOTE_INLINE void input_grad_one(const float* wt, const float* const* rows, float* row,
                                   const Dims& d, int iw, int cb, int b) {
  const int c = d.c;
  V acc = {};
  for (int kh = 0; kh < d.kh; ++kh) {
    if (rows[kh] == nullptr) {
      continue;
    }
    for (int kw = 0; kw < d.kw; ++kw) {
      const int u = iw + d.pw - kw * d.dw;  // = ow * sw
      if (u >= 0 && u % d.sw == 0 && u / d.sw < d.ow) {
        acc += load<V, Full>(rows[kh] + static_cast<int64_t>(u / d.sw) * c + cb, b) *
               load<V, Full>(wt + (kh * d.kw + kw) * c + cb, b);
      }
    }
  }
  store<V, Full>(row + static_cast<int64_t>(iw) * c + cb, acc, b);
}

// kPositions interior input columns from iw (stride 1), no checks.
template <class V, bool Full>
MLXNOTE_INLINE void input_grad_block(const float* wt, const float* const* rows, float* row,
                                     const Dims& d, int iw, int cb, int b) {
  const int c = d.c;
  V acc[kPositions] = {};
  for (int kh = 0; kh < d.kh; ++kh) {
    if (rows[kh] == nullptr) {
      continue;
    }
    for (int kw = 0; kw < d.kw; ++kw) {
      const V wv = load<V, Full>(wt + (kh * d.kw + kw) * c + cb, b);
      const float* at = rows[kh] + static_cast<int64_t>(iw + d.pw - kw * d.dw) * c + cb;
      for (int p = 0; p < kPositions; ++p) {
        acc[p] += load<V, Full>(at + static_cast<int64_t>(p) * c, b) * wv;
      }
    }
  }
  for (int p = 0; p < kPositions; ++p) {
    store<V, Full>(row + static_cast<int64_t>(iw + p) * c + cb, acc[p], b);
  }
}

// Every channel block of columns [j0, j1) of a row: one(j, cb, b, full) column by column,
// or block(j, cb, b, full) kPositions at a time inside the interior `in` (b channels from
// cb: kLanes<V>, or the tail with full false).
template <class V, class One, class Block>
MLXNOTE_INLINE void each_column(int j0, int j1, int c, Columns in, One one, Block block) {
  auto all_blocks = [&](int j, auto f) {
    int cb = 0;
    for (; cb + kLanes<V> <= c; cb += kLanes<V>) {
      f(j, cb, kLanes<V>, std::true_type{});
    }
    if (cb < c) {
      f(j, cb, c - cb, std::false_type{});
    }
  };
  int j = j0;
  for (; j < std::min(in.lo, j1); ++j) {
    all_blocks(j, one);
  }
  for (; j + kPositions <= std::min(in.hi, j1); j += kPositions) {
    all_blocks(j, block);
  }
  for (; j < j1; ++j) {
    all_blocks(j, one);
  }
}

// The weight gradient of output column ow of dy row g (tap row kh), channels [cb, cb + b),
// with checks: part[tap] += x[ih, ow * sw + off] * g[ow].
template <class V, bool Full>
MLXNOTE_INLINE void weight_grad_one(const float* xr, const float* g, float* part,
                                    const Dims& d, int kh, int ow, int cb, int b) {
  const int c = d.c;
  const V gv = load<V, Full>(g + static_cast<int64_t>(ow) * c + cb, b);
  for (int kw = 0; kw < d.kw; ++kw) {
    const int iw = ow * d.sw + kw * d.dw - d.pw;
    if (iw >= 0 && iw < d.w) {
      float* acc = part + (kh * d.kw + kw) * c + cb;
      store<V, Full>(acc, load<V, Full>(acc, b) + load<V, Full>(xr + static_cast<int64_t>(iw) * c + cb, b) * gv, b);
    }
  }
}

// kPositions interior output columns from ow, no checks: each tap's products summed in
// registers, then added to part once.
template <class V, bool Full>
MLXNOTE_INLINE void weight_grad_block(const float* xr, const float* g, float* part,
                                      const Dims& d, int kh, int ow, int cb, int b) {
  const int c = d.c;
  V gv[kPositions];
  for (int p = 0; p < kPositions; ++p) {
    gv[p] = load<V, Full>(g + static_cast<int64_t>(ow + p) * c + cb, b);
  }
  for (int kw = 0; kw < d.kw; ++kw) {
    const float* at = xr + (static_cast<int64_t>(ow) * d.sw + kw * d.dw - d.pw) * c + cb;
    V sum = load<V, Full>(at, b) * gv[0];
    for (int p = 1; p < kPositions; ++p) {
      sum += load<V, Full>(at + static_cast<int64_t>(p) * d.sw * c, b) * gv[p];
    }
    float* acc = part + (kh * d.kw + kw) * c + cb;
    store<V, Full>(acc, load<V, Full>(acc, b) + sum, b);
  }
}

template <class V>
MLXNOTE_INLINE void forward_dm1(const float* x, const float* wt, const float* bias, float* y,
                                const Dims& d, int n, int oh, int ow0, int ow1) {
  const int c = d.c;
  float* row = y + (static_cast<int64_t>(n) * d.oh + oh) * d.ow * c;
  const float* xn = x + static_cast<int64_t>(n) * d.h * d.w * c;
  const float* xr[kMaxTaps];
  for (int kh = 0; kh < d.kh; ++kh) {
    const int ih = oh * d.sh + kh * d.dh - d.ph;
    xr[kh] = ih < 0 || ih >= d.h ? nullptr : xn + static_cast<int64_t>(ih) * d.w * c;
  }
  each_column<V>(
      ow0, ow1, c, forward_interior(d),
      [&](int ow, int cb, int b, auto full) {
        forward_one<V, decltype(full)::value>(xr, wt, bias, row, d, ow, cb, b);
      },
      [&](int ow, int cb, int b, auto full) {
        forward_block<V, decltype(full)::value>(xr, wt, bias, row, d, ow, cb, b);
      });
}

template <class V>
MLXNOTE_INLINE void backward_dm1(const float* x, const float* wt, const float* const* rows,
                                 float* dx, float* part, const Dims& d, int n, int ih, int j0,
                                 int j1) {
  const int c = d.c;
  if (dx != nullptr) {
    float* row = dx + (static_cast<int64_t>(n) * d.h + ih) * d.w * c;
    each_column<V>(
        j0, std::min(j1, d.w), c, input_grad_interior(d),
        [&](int iw, int cb, int b, auto full) {
          input_grad_one<V, decltype(full)::value>(wt, rows, row, d, iw, cb, b);
        },
        [&](int iw, int cb, int b, auto full) {
          input_grad_block<V, decltype(full)::value>(wt, rows, row, d, iw, cb, b);
        });
  }
  if (part == nullptr) {
    return;
  }
  const float* xr = x + (static_cast<int64_t>(n) * d.h + ih) * d.w * c;
  const Columns in = forward_interior(d);
  for (int kh = 0; kh < d.kh; ++kh) {
    const float* g = rows[kh];
    if (g == nullptr) {
      continue;
    }
    each_column<V>(
        j0, std::min(j1, d.ow), c, in,
        [&](int ow, int cb, int b, auto full) {
          weight_grad_one<V, decltype(full)::value>(xr, g, part, d, kh, ow, cb, b);
        },
        [&](int ow, int cb, int b, auto full) {
          weight_grad_block<V, decltype(full)::value>(xr, g, part, d, kh, ow, cb, b);
        });
  }
}

}  // namespace

// The entry points: the kernel with the CPU's native vector (native_vector.h).
MLXNOTE_NATIVE_VECTOR(forward_row_dm1, forward_dm1,
                      (const float* x, const float* wt, const float* bias, float* y,
                       const Dims& d, int n, int oh, int ow0, int ow1),
                      (x, wt, bias, y, d, n, oh, ow0, ow1))

MLXNOTE_NATIVE_VECTOR(backward_row_dm1, backward_dm1,
                      (const float* x, const float* wt, const float* const* rows, float* dx,
                       float* part, const Dims& d, int n, int ih, int j0, int j1),
                      (x, wt, rows, dx, part, d, n, ih, j0, j1))

}  // namespace mlxnote::kernels
