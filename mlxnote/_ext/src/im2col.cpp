#include "im2col.h"

#include <cstring>
#include <stdexcept>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/utils.h"

#include "common.h"
#include "pool.h"


namespace mlxnote {

bool Geometry::operator==(const Geometry& g) const {
  for (int j = 0; j < 3; ++j) {
    if (l[j] != g.l[j] || o[j] != g.o[j] || k[j] != g.k[j] || s[j] != g.s[j] ||
        d[j] != g.d[j] || p[j] != g.p[j]) {
      return false;
    }
  }
  return nd == g.nd && c == g.c && c0 == g.c0 && cg == g.cg;
}

namespace {

MLXNOTE_CLONES
void add_into(float* __restrict acc, const float* __restrict src, int n) {
  for (int i = 0; i < n; ++i) {
    acc[i] += src[i];
  }
}

// One row (n, o0, o1) of cols: O2 positions x K0*K1*K2 taps x cg channels.
void im2col_row(const float* x, float* cols, const Geometry& g, int64_t row) {
  const int o1 = static_cast<int>(row % g.o[1]);
  const int o0 = static_cast<int>((row / g.o[1]) % g.o[0]);
  const int64_t n = row / (static_cast<int64_t>(g.o[0]) * g.o[1]);
  const int64_t taps = static_cast<int64_t>(g.k[0]) * g.k[1] * g.k[2];
  float* out = cols + row * g.o[2] * taps * g.cg;
  const size_t bytes = sizeof(float) * g.cg;
  for (int o2 = 0; o2 < g.o[2]; ++o2) {
    for (int k0 = 0; k0 < g.k[0]; ++k0) {
      const int i0 = o0 * g.s[0] + k0 * g.d[0] - g.p[0];
      for (int k1 = 0; k1 < g.k[1]; ++k1) {
        const int i1 = o1 * g.s[1] + k1 * g.d[1] - g.p[1];
        const bool inside = i0 >= 0 && i0 < g.l[0] && i1 >= 0 && i1 < g.l[1];
        for (int k2 = 0; k2 < g.k[2]; ++k2, out += g.cg) {
          const int i2 = o2 * g.s[2] + k2 * g.d[2] - g.p[2];
          if (inside && i2 >= 0 && i2 < g.l[2]) {
            const int64_t at = ((n * g.l[0] + i0) * g.l[1] + i1) * g.l[2] + i2;
            std::memcpy(out, x + at * g.c + g.c0, bytes);
          } else {
            std::memset(out, 0, bytes);
          }
        }
      }
    }
  }
}

// The tap of output grid position t along dimension j: o = (i + p - k d) / s when whole.
inline bool source(int i, int k, const Geometry& g, int j, int& o) {
  const int t = i + g.p[j] - k * g.d[j];
  if (t < 0 || t % g.s[j] != 0) {
    return false;
  }
  o = t / g.s[j];
  return o < g.o[j];
}

// One row (n, i0, i1) of x: L2 positions x cg channels, each the sum of its taps.
void col2im_row(const float* cols, float* x, const Geometry& g, int64_t row) {
  const int i1 = static_cast<int>(row % g.l[1]);
  const int i0 = static_cast<int>((row / g.l[1]) % g.l[0]);
  const int64_t n = row / (static_cast<int64_t>(g.l[0]) * g.l[1]);
  float* out = x + row * g.l[2] * g.cg;
  std::memset(out, 0, sizeof(float) * g.l[2] * g.cg);
  for (int k0 = 0; k0 < g.k[0]; ++k0) {
    int o0;
    if (!source(i0, k0, g, 0, o0)) {
      continue;
    }
    for (int k1 = 0; k1 < g.k[1]; ++k1) {
      int o1;
      if (!source(i1, k1, g, 1, o1)) {
        continue;
      }
      const int64_t base = (n * g.o[0] + o0) * g.o[1] + o1;  // (n, o0, o1) in cols
      for (int k2 = 0; k2 < g.k[2]; ++k2) {
        const int64_t tap = (static_cast<int64_t>(k0) * g.k[1] + k1) * g.k[2] + k2;
        const int64_t taps = static_cast<int64_t>(g.k[0]) * g.k[1] * g.k[2];
        for (int i2 = 0; i2 < g.l[2]; ++i2) {
          int o2;
          if (!source(i2, k2, g, 2, o2)) {
            continue;
          }
          const float* src = cols + ((base * g.o[2] + o2) * taps + tap) * g.cg;
          add_into(out + static_cast<int64_t>(i2) * g.cg, src, g.cg);
        }
      }
    }
  }
}

void require(const mx::array& a) {
  if (a.dtype() != mx::float32 || !a.flags().row_contiguous) {
    throw std::invalid_argument("mlxnote im2col: a row-contiguous float32 input");
  }
}

mx::array make(ColsKind kind, const mx::array& a, const Geometry& g, mx::StreamOrDevice s) {
  auto stream = mx::to_stream(s);
  std::vector<mx::array> ins = {
      mx::contiguous(mx::astype(a, mx::float32, stream), false, stream)};
  auto prim = std::make_shared<Cols>(stream, g, kind);
  auto shape = prim->output_shapes(ins)[0];
  return mx::array(std::move(shape), mx::float32, std::move(prim), std::move(ins));
}

}  // namespace

void Cols::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& a = inputs[0];
  require(a);
  out.set_data(mx::allocator::malloc(out.nbytes()));
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.set_input_array(a);
  encoder.set_output_array(out);
  const int64_t n = a.shape(0);
  encoder.dispatch([src = a.data<float>(), dst = out.data<float>(), g = p_, kind = kind_, n]() {
    auto& pool = ThreadPool::instance();
    if (kind == ColsKind::Im2Col) {
      pool.parallel_for(n * g.o[0] * g.o[1], 1, [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) {
          im2col_row(src, dst, g, r);
        }
      });
    } else {
      pool.parallel_for(n * g.l[0] * g.l[1], 1, [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) {
          col2im_row(src, dst, g, r);
        }
      });
    }
  });
}

void Cols::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::runtime_error("mlxnote im2col: CPU only");
}

std::vector<mx::Shape> Cols::output_shapes(const std::vector<mx::array>& inputs) {
  mx::Shape shape = {inputs[0].shape(0)};
  const int first = 3 - p_.nd;
  if (kind_ == ColsKind::Im2Col) {
    for (int j = first; j < 3; ++j) shape.push_back(p_.o[j]);
    for (int j = first; j < 3; ++j) shape.push_back(p_.k[j]);
  } else {
    for (int j = first; j < 3; ++j) shape.push_back(p_.l[j]);
  }
  shape.push_back(p_.cg);
  return {shape};
}

std::vector<mx::array> Cols::vjp(const std::vector<mx::array>& primals,
                                 const std::vector<mx::array>& cotangents,
                                 const std::vector<int>&, const std::vector<mx::array>&) {
  if (kind_ == ColsKind::Col2Im) {
    Geometry g = p_;
    g.c = g.cg;
    g.c0 = 0;
    return {im2col(cotangents[0], g, stream())};
  }
  auto dx = col2im(cotangents[0], p_, stream());
  if (p_.cg == p_.c) {
    return {dx};
  }
  // Channels outside [c0, c0 + cg) get no gradient.
  std::vector<std::pair<int, int>> widths(primals[0].ndim(), {0, 0});
  widths.back() = {p_.c0, p_.c - p_.c0 - p_.cg};
  return {mx::pad(dx, widths, mx::array(0.0f), "constant", stream())};
}

std::vector<mx::array> Cols::jvp(const std::vector<mx::array>&,
                                 const std::vector<mx::array>& tangents,
                                 const std::vector<int>&) {
  return {kind_ == ColsKind::Im2Col ? im2col(tangents[0], p_, stream())
                                    : col2im(tangents[0], p_, stream())};
}

std::pair<std::vector<mx::array>, std::vector<int>> Cols::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  std::vector<mx::array> outs;
  for (int i = 0; i < inputs[0].shape(axes[0]); ++i) {
    auto a = mx::take(inputs[0], i, axes[0], stream());
    outs.push_back(kind_ == ColsKind::Im2Col ? im2col(a, p_, stream())
                                             : col2im(a, p_, stream()));
  }
  return {{mx::stack(outs, 0, stream())}, {0}};
}

const char* Cols::name() const {
  return kind_ == ColsKind::Im2Col ? "MlxnoteIm2Col" : "MlxnoteCol2Im";
}

bool Cols::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const Cols*>(&other);
  return o != nullptr && o->kind_ == kind_ && o->p_ == p_;
}

mx::array im2col(const mx::array& x, const Geometry& g, mx::StreamOrDevice s) {
  return make(ColsKind::Im2Col, x, g, s);
}

mx::array col2im(const mx::array& cols, const Geometry& g, mx::StreamOrDevice s) {
  return make(ColsKind::Col2Im, cols, g, s);
}

}  // namespace mlxnote
