#include "dnnl.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>

#include <optional>
#include <stdexcept>
#include <string>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"

#include "columns.h"
#include "im2col.h"
#include "pool.h"
#include "rnn_kernels.h"  // add_into
#include "taps.h"

namespace mlxnote {

namespace {

MlxnoteDnnlConvFn conv_fn = nullptr;
MlxnoteDnnlVersionFn version_fn = nullptr;

using Kind = MlxnoteDnnlKind;

void require(const mx::array& a, const char* what) {
  if (a.dtype() != mx::float32 || !a.flags().row_contiguous) {
    throw std::invalid_argument(std::string("mlxnote dnnl_conv: ") + what +
                                " must be row-contiguous float32");
  }
}

mx::array as_input(const mx::array& a, mx::Stream s) {
  return mx::contiguous(mx::astype(a, mx::float32, s), false, s);
}

// The op of `kind` on (a, b), plus `bias` (forward: by oneDNN; input gradient, the forward
// of a transposed conv: in the same call, after it) per output channel.
mx::array make(Kind kind, const mx::array& a, const mx::array& b, DnnlParams p,
               mx::StreamOrDevice s, const std::optional<mx::array>& bias = std::nullopt) {
  auto stream = mx::to_stream(s);
  std::vector<mx::array> ins = {as_input(a, stream), as_input(b, stream)};
  p.c.bias = bias && kind != MLXNOTE_DNNL_BACKWARD_WEIGHTS;
  if (p.c.bias) {
    const int64_t channels = kind == MLXNOTE_DNNL_FORWARD ? p.c.o : p.c.c;
    if (bias->ndim() != 1 || bias->shape(0) != channels) {
      std::string given;
      for (auto d : bias->shape()) {
        given += (given.empty() ? "" : ", ") + std::to_string(d);
      }
      throw std::invalid_argument("mlxnote dnnl_conv: the bias must be (" +
                                  std::to_string(channels) +
                                  ",), one per output channel; got (" + given + ")");
    }
    ins.push_back(as_input(*bias, stream));
  }
  auto prim = std::make_shared<DnnlConv>(stream, p, kind);
  auto shape = prim->output_shapes(ins)[0];
  return mx::array(std::move(shape), mx::float32, std::move(prim), std::move(ins));
}

mx::Shape data_shape(const MlxnoteDnnlConv& c, const int64_t* sizes, int64_t channels) {
  mx::Shape s = {static_cast<int>(c.n)};
  for (int j = 0; j < c.nd; ++j) s.push_back(static_cast<int>(sizes[j]));
  s.push_back(static_cast<int>(channels));
  return s;
}


// The parameters of a conv of an input (n, *length, c) with w (o, *K, c / groups).
DnnlParams params(int n, const std::vector<int>& length, int c, const mx::array& w,
                  const std::vector<int>& strides,
                  const std::vector<std::pair<int, int>>& padding,
                  const std::vector<int>& dilations, int groups) {
  const int nd = static_cast<int>(length.size());
  if (nd < 1 || nd > 3 || static_cast<int>(w.ndim()) != nd + 2 || static_cast<int>(strides.size()) != nd ||
      static_cast<int>(padding.size()) != nd || static_cast<int>(dilations.size()) != nd) {
    throw std::invalid_argument(
        "mlxnote dnnl_conv: 1 to 3 spatial dimensions, w of rank 2 + that, one stride, "
        "(lo, hi) padding and dilation per dimension");
  }
  DnnlParams p;
  auto& q = p.c;
  q.nd = nd;
  q.n = n;
  q.c = c;
  q.o = w.shape(0);
  q.groups = groups;
  if (groups < 1 || q.c % groups || q.o % groups || w.shape(-1) * groups != q.c) {
    throw std::invalid_argument("mlxnote dnnl_conv: channels, weight and groups do not match");
  }
  for (int j = 0; j < nd; ++j) {
    q.l[j] = length[j];
    q.k[j] = w.shape(1 + j);
    q.s[j] = strides[j];
    q.d[j] = dilations[j];
    q.lo[j] = padding[j].first;
    q.hi[j] = padding[j].second;
    if (q.l[j] < 1 || q.s[j] < 1 || q.d[j] < 1 || q.lo[j] < 0 || q.hi[j] < 0) {
      throw std::invalid_argument(
          "mlxnote dnnl_conv: sizes, strides and dilations >= 1, padding >= 0");
    }
    if (q.l[j] + q.lo[j] + q.hi[j] < (q.k[j] - 1) * q.d[j] + 1) {
      throw std::invalid_argument("mlxnote dnnl_conv: the kernel is larger than the padded input");
    }
    q.out[j] = (q.l[j] + q.lo[j] + q.hi[j] - (q.k[j] - 1) * q.d[j] - 1) / q.s[j] + 1;
  }
  return p;
}


// The input gradient of a stride-1 depthwise conv (groups == C) as a forward depthwise conv
// of dy with the taps reversed, each group's dm outputs as its inputs, and the padding
// (k - 1) * d - lo / - hi; none when a stride is > 1 or the padding is beyond the kernel's
// reach. oneDNN 3.2's depthwise forward (brdgmm) beats its backward-data kernel (jit_dw):
// 16x64x64x64 3x3 3.2 vs 4.5 ms (load 4.8).
std::optional<mx::array> depthwise_input_grad(const mx::array& dy, const mx::array& w,
                                              const MlxnoteDnnlConv& c, mx::Stream s) {
  if (c.groups != c.c || c.groups == 1) {
    return std::nullopt;
  }
  std::vector<std::pair<int, int>> pads;
  std::vector<int> ones(c.nd, 1), dil, out;
  for (int j = 0; j < c.nd; ++j) {
    const int reach = static_cast<int>((c.k[j] - 1) * c.d[j]);
    if (c.s[j] != 1 || c.lo[j] > reach || c.hi[j] > reach) {
      return std::nullopt;
    }
    pads.emplace_back(reach - c.lo[j], reach - c.hi[j]);
    dil.push_back(static_cast<int>(c.d[j]));
    out.push_back(static_cast<int>(c.out[j]));
  }
  // w (C*dm, *K, 1) -> (C, *K, dm), taps reversed
  const int dm = static_cast<int>(c.o / c.c);
  mx::Shape split = {static_cast<int>(c.c), dm};
  for (int j = 0; j < c.nd; ++j) split.push_back(static_cast<int>(c.k[j]));
  auto wt = mx::moveaxis(mx::reshape(w, split, s), 1, -1, s);
  for (int j = 0; j < c.nd; ++j) {
    const int k = static_cast<int>(c.k[j]);
    wt = mx::take(wt, mx::arange(k - 1, -1, -1, mx::int32, s), 1 + j, s);
  }
  auto p = params(static_cast<int>(c.n), out, static_cast<int>(c.o), wt, ones, pads, dil,
                  static_cast<int>(c.c));
  return make(MLXNOTE_DNNL_FORWARD, dy, wt, p, s);
}

}  // namespace

bool DnnlParams::operator==(const DnnlParams& o) const {
  const auto &a = c, &b = o.c;
  if (a.nd != b.nd || a.n != b.n || a.c != b.c || a.o != b.o || a.groups != b.groups) {
    return false;
  }
  for (int j = 0; j < a.nd; ++j) {
    if (a.l[j] != b.l[j] || a.k[j] != b.k[j] || a.out[j] != b.out[j] || a.s[j] != b.s[j] ||
        a.d[j] != b.d[j] || a.lo[j] != b.lo[j] || a.hi[j] != b.hi[j]) {
      return false;
    }
  }
  return true;
}

std::string dnnl_load(const std::string& libdnnl, const std::string& impl) {
  if (conv_fn != nullptr) {
    return "";
  }
  // libdnnl first, by its full path and RTLD_GLOBAL: libmlxnote_dnnl.so needs it by soname.
  if (dlopen(libdnnl.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    return std::string("cannot load oneDNN: ") + dlerror();
  }
  void* h = dlopen(impl.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    return std::string("cannot load mlxnote's oneDNN kernels: ") + dlerror();
  }
  auto conv = reinterpret_cast<MlxnoteDnnlConvFn>(dlsym(h, "mlxnote_dnnl_conv_run"));
  auto version = reinterpret_cast<MlxnoteDnnlVersionFn>(dlsym(h, "mlxnote_dnnl_version"));
  if (conv == nullptr || version == nullptr) {
    return "libmlxnote_dnnl.so lacks its entry points (rebuild mlxnote)";
  }
  version_fn = version;
  conv_fn = conv;
  return "";
}

std::string dnnl_version() {
  return version_fn == nullptr ? "" : version_fn();
}

void DnnlConv::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  if (conv_fn == nullptr) {
    throw std::runtime_error("mlxnote dnnl_conv: oneDNN is not loaded");
  }
  const auto& a = inputs[0];
  const auto& b = inputs[1];
  require(a, "the first input");
  require(b, "the second input");
  const float* bias = nullptr;
  if (inputs.size() > 2) {
    require(inputs[2], "the bias");
    bias = inputs[2].data<float>();
  }
  out.set_data(mx::allocator::malloc(out.nbytes()));
  auto& encoder = mx::cpu::get_command_encoder(stream());
  for (const auto& in : inputs) {
    encoder.set_input_array(in);
  }
  encoder.set_output_array(out);
  encoder.dispatch([pa = a.data<float>(), pb = b.data<float>(), bias, po = out.data<float>(),
                    p = p_.c, kind = kind_, fn = conv_fn]() {
    char err[512] = {0};
    if (fn(kind, &p, pa, pb, bias, po, ThreadPool::instance().threads(), err,
           sizeof(err)) != 0) {
      throw std::runtime_error(std::string("mlxnote dnnl_conv (oneDNN): ") + err);
    }
    if (bias != nullptr && kind == MLXNOTE_DNNL_BACKWARD_DATA) {
      // a transposed conv's bias (oneDNN's backward-data takes none), on the pool: MLX's
      // one-threaded y + b took 2.1 ms for a 16 MB y
      int64_t rows = p.n;
      for (int j = 0; j < p.nd; ++j) {
        rows *= p.l[j];
      }
      const int64_t c = p.c;
      ThreadPool::instance().parallel_for(rows, std::max<int64_t>(1, 16384 / c),
                                          [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) {
          kernels::add_into(po + r * c, bias, static_cast<int>(c));
        }
      });
    }
  });
}

void DnnlConv::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::runtime_error("mlxnote dnnl_conv: CPU only (GPUs use MLX's own convolutions)");
}

std::vector<mx::Shape> DnnlConv::output_shapes(const std::vector<mx::array>&) {
  const auto& c = p_.c;
  switch (kind_) {
    case MLXNOTE_DNNL_FORWARD:
      return {data_shape(c, c.out, c.o)};
    case MLXNOTE_DNNL_BACKWARD_DATA:
      return {data_shape(c, c.l, c.c)};
    default: {
      mx::Shape s = {static_cast<int>(c.o)};
      for (int j = 0; j < c.nd; ++j) s.push_back(static_cast<int>(c.k[j]));
      s.push_back(static_cast<int>(c.c / c.groups));
      return {s};
    }
  }
}

// a (n, *l, ch) sampled on a grid (n, *size, ch): at m, a[m * stride - pad] (0 outside; pad
// may be negative): im2col with one tap, on the pool. `a` itself when that is the identity.
mx::array resampled(const mx::array& a, const int64_t* l, const int64_t* size,
                    const int64_t* stride, const int64_t* pad, int nd, int64_t ch,
                    mx::Stream s) {
  Geometry g;
  g.nd = nd;
  g.c = g.cg = static_cast<int>(ch);
  bool same = true;
  for (int j = 0; j < nd; ++j) {
    const int at = 3 - nd + j;  // Geometry's dimensions are the last nd of 3
    g.l[at] = static_cast<int>(l[j]);
    g.o[at] = static_cast<int>(size[j]);
    g.s[at] = static_cast<int>(stride[j]);
    g.p[at] = static_cast<int>(pad[j]);
    same = same && size[j] == l[j] && stride[j] == 1 && pad[j] == 0;
  }
  return same ? a : im2col(a, g, s);
}

// Below this many multiply-adds per tap (grid rows x C_in x C_out) oneDNN's kernel is as
// fast or faster (measured, fwd+dw: conv3d 4x8^3 32->32 s2 transposed, 3.0M per tap, 7.8 vs
// 8.7 ms; conv1d 4x1024 32->32, 4.2M, 0.73 vs 0.90 for this; 2-D and 3-D with 32 channels
// at 9.5-24M within 7% either way). MLXNOTE_DNNL_WGRAD=1: this at any size.
constexpr int64_t kTapsMinMacs = int64_t{1} << 22;

// The weight gradient of a groups-1 conv as one GEMM per tap. Tap k reads the padded input
// at o * s + k * d = (o + q) * s + ph (ph = k * d mod s, q = k * d div s, per dimension):
// x's phase ph (the padded x at stride s from ph) at o + q. dy and every phase are put on
// one grid (dy's size plus the largest q, zeros past their ends), where the tap's pairs are
// the rows r and r + offset(q) of the flattened grids, none wrapping into the next row or
// sample. The products are one primitive (`tap_products`, taps.cpp): GEMMs over chunks of
// 1024 rows on the pool, each chunk read for all taps while it is in cache (against MLX
// matmuls over 16k-row chunks, dw alone, min of 6x31: conv1d 3.7 -> 3.0 ms, conv2d 19.6
// either way, conv2d_transpose s2 11.9 -> 11.2). oneDNN 3.2's AVX2 weight-gradient kernel (jit:avx2) took 8.4 ms for conv1d
// 16x1024 64->64 k3 with a relative error of 3.1e-6 against float64 (this: 4.4 ms, 3.3e-7);
// conv2d 16x64x64 32->64 3x3: 32 ms, 8.7e-6 (this: 23 ms, 2.6e-7); conv2d_transpose s2
// 16x32x32 64->64 fwd+bwd 45.4 -> 39.6 ms. MLXNOTE_DNNL_WGRAD=0: oneDNN's kernel
// always.
std::optional<mx::array> taps_weight_grad(const mx::array& x, const mx::array& dy,
                                          const MlxnoteDnnlConv& c, mx::Stream s) {
  const char* env = std::getenv("MLXNOTE_DNNL_WGRAD");
  const std::string own = env == nullptr ? "" : env;
  if (c.groups != 1 || own == "0") return std::nullopt;
  const int nd = c.nd;
  int64_t grid[3], ones[3] = {1, 1, 1}, zero[3] = {0, 0, 0}, step[3];
  for (int j = 0; j < nd; ++j) grid[j] = c.out[j] + (c.k[j] - 1) * c.d[j] / c.s[j];
  int64_t rows = c.n;
  for (int j = nd - 1; j >= 0; --j) {
    step[j] = j == nd - 1 ? 1 : step[j + 1] * grid[j + 1];
    rows *= grid[j];
  }
  if (rows > (int64_t{1} << 31) - 1) return std::nullopt;
  if (own != "1" && rows * c.c * c.o < kTapsMinMacs) return std::nullopt;
  const int ci = static_cast<int>(c.c), co = static_cast<int>(c.o);
  auto ds = mx::reshape(resampled(dy, c.out, grid, ones, zero, nd, c.o, s), {-1, co}, s);
  // each tap (in the weight's order): its phase (an index into `phases`) and row offset
  std::vector<std::vector<int64_t>> phases;
  std::vector<std::pair<int, int>> taps = {{0, 0}};
  std::vector<std::vector<int64_t>> tap_phase = {{}};
  for (int j = 0; j < nd; ++j) {
    std::vector<std::pair<int, int>> next;
    std::vector<std::vector<int64_t>> next_phase;
    for (size_t t = 0; t < taps.size(); ++t) {
      for (int64_t k = 0; k < c.k[j]; ++k) {
        auto ph = tap_phase[t];
        ph.push_back(k * c.d[j] % c.s[j]);
        next_phase.push_back(ph);
        next.push_back({0, taps[t].second + static_cast<int>(k * c.d[j] / c.s[j] * step[j])});
      }
    }
    taps = next;
    tap_phase = next_phase;
  }
  std::vector<mx::array> xs;
  for (size_t t = 0; t < taps.size(); ++t) {
    auto at = std::find(phases.begin(), phases.end(), tap_phase[t]);
    if (at == phases.end()) {
      int64_t pad[3];
      for (int j = 0; j < nd; ++j) pad[j] = c.lo[j] - tap_phase[t][j];
      xs.push_back(mx::reshape(resampled(x, c.l, grid, c.s, pad, nd, c.c, s), {-1, ci}, s));
      phases.push_back(tap_phase[t]);
      at = phases.end() - 1;
    }
    taps[t].first = static_cast<int>(at - phases.begin());
  }
  int last = 0;  // every nonzero row of dy lies below rows - last
  for (const auto& t : taps) last = std::max(last, t.second);
  auto dw = tap_products(ds, xs, taps, static_cast<int>(rows) - last, s);  // (co, taps, ci)
  mx::Shape shape = {co};
  for (int j = 0; j < nd; ++j) shape.push_back(static_cast<int>(c.k[j]));
  shape.push_back(ci);
  return mx::reshape(dw, shape, s);
}

std::vector<mx::array> DnnlConv::vjp(const std::vector<mx::array>& primals,
                                     const std::vector<mx::array>& cotangents,
                                     const std::vector<int>& argnums,
                                     const std::vector<mx::array>&) {
  const auto& a = primals[0];
  const auto& b = primals[1];
  const auto s = stream();
  // Made contiguous once, on the pool: a broadcast cotangent (the gradient of a sum) would
  // otherwise be copied by each gradient, with MLX's one-threaded copy (16 MB: 2.4 ms).
  const auto ct = contiguous_rows(cotangents[0], s);
  std::vector<mx::array> out;
  for (int arg : argnums) {
    if (arg == 2) {  // the bias: the cotangent's columns summed, read in place
      out.push_back(column_sums(cotangents[0], s));
      continue;
    }
    switch (kind_) {
      case MLXNOTE_DNNL_FORWARD:  // y = F(x, w) (+ bias)
        if (arg == 0) {
          auto dx = depthwise_input_grad(ct, b, p_.c, s);
          out.push_back(dx ? *dx : make(MLXNOTE_DNNL_BACKWARD_DATA, ct, b, p_, s));
        } else {
          auto dw = taps_weight_grad(a, ct, p_.c, s);
          out.push_back(dw ? *dw : make(MLXNOTE_DNNL_BACKWARD_WEIGHTS, a, ct, p_, s));
        }
        break;
      case MLXNOTE_DNNL_BACKWARD_DATA:  // dx = G(dy, w)
        if (arg == 0) {
          out.push_back(make(MLXNOTE_DNNL_FORWARD, ct, b, p_, s));
        } else {
          auto dw = taps_weight_grad(ct, a, p_.c, s);
          out.push_back(dw ? *dw : make(MLXNOTE_DNNL_BACKWARD_WEIGHTS, ct, a, p_, s));
        }
        break;
      default:  // dw = H(x, dy)
        out.push_back(arg == 0 ? make(MLXNOTE_DNNL_BACKWARD_DATA, b, ct, p_, s)
                               : make(MLXNOTE_DNNL_FORWARD, a, ct, p_, s));
        break;
    }
  }
  return out;
}

std::vector<mx::array> DnnlConv::jvp(const std::vector<mx::array>& primals,
                                     const std::vector<mx::array>& tangents,
                                     const std::vector<int>& argnums) {
  // Bilinear in (a, b): the tangent is the op (without the bias) with one argument
  // replaced by its tangent; the bias's tangent is added as it is.
  std::optional<mx::array> sum;
  for (size_t i = 0; i < argnums.size(); ++i) {
    std::optional<mx::array> term;
    if (argnums[i] == 2) {
      term = mx::broadcast_to(tangents[i], output_shapes(primals)[0], stream());
    } else {
      std::vector<mx::array> args = {primals[0], primals[1]};
      args[argnums[i]] = tangents[i];
      term = make(kind_, args[0], args[1], p_, stream());
    }
    sum = sum ? mx::add(*sum, *term, stream()) : *term;
  }
  return {*sum};
}

std::pair<std::vector<mx::array>, std::vector<int>> DnnlConv::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  return vmap_entries(inputs, axes, stream(), [&](const std::vector<mx::array>& args) {
    std::optional<mx::array> bias;
    if (args.size() > 2) bias = args[2];
    return std::vector<mx::array>{make(kind_, args[0], args[1], p_, stream(), bias)};
  });
}

const char* DnnlConv::name() const {
  switch (kind_) {
    case MLXNOTE_DNNL_FORWARD:
      return "MlxnoteDnnlConv";
    case MLXNOTE_DNNL_BACKWARD_DATA:
      return "MlxnoteDnnlConvInputGrad";
    default:
      return "MlxnoteDnnlConvWeightGrad";
  }
}

bool DnnlConv::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const DnnlConv*>(&other);
  return o != nullptr && o->kind_ == kind_ && o->p_ == p_ && o->p_.c.bias == p_.c.bias;
}


mx::array dnnl_conv(const mx::array& x, const mx::array& w, const std::vector<int>& strides,
                    const std::vector<std::pair<int, int>>& padding,
                    const std::vector<int>& dilations, int groups,
                    const std::optional<mx::array>& bias, mx::StreamOrDevice s) {
  if (x.ndim() < 3 || x.ndim() > 5) {
    throw std::invalid_argument("mlxnote dnnl_conv: x is (N, *L, C), 1 to 3 spatial dims");
  }
  std::vector<int> length(x.shape().begin() + 1, x.shape().end() - 1);
  auto p = params(x.shape(0), length, x.shape(-1), w, strides, padding, dilations, groups);
  return make(MLXNOTE_DNNL_FORWARD, x, w, p, s, bias);
}

mx::array dnnl_conv_input_grad(const mx::array& dy, const mx::array& w,
                               const std::vector<int>& length, const std::vector<int>& strides,
                               const std::vector<std::pair<int, int>>& padding,
                               const std::vector<int>& dilations,
                               const std::optional<mx::array>& bias, mx::StreamOrDevice s) {
  auto p = params(dy.shape(0), length, w.shape(-1), w, strides, padding, dilations, 1);
  for (int j = 0; j < p.c.nd; ++j) {
    if (static_cast<int>(dy.ndim()) != p.c.nd + 2 || dy.shape(1 + j) != p.c.out[j] || dy.shape(-1) != p.c.o) {
      throw std::invalid_argument("mlxnote dnnl_conv_input_grad: dy's shape is not the conv's output");
    }
  }
  return make(MLXNOTE_DNNL_BACKWARD_DATA, dy, w, p, s, bias);
}

}  // namespace mlxnote
