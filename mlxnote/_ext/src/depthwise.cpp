#include "depthwise.h"

#include <stdexcept>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/utils.h"

#include "depthwise_kernels.h"
#include "pool.h"

namespace mlxnote {

bool DepthwiseParams::operator==(const DepthwiseParams& o) const {
  return sh == o.sh && sw == o.sw && dh == o.dh && dw == o.dw && ph == o.ph &&
         pw == o.pw && oh == o.oh && ow == o.ow && h == o.h && w == o.w && kh == o.kh &&
         kw == o.kw && dm == o.dm && flip == o.flip;
}

namespace {

kernels::Dims dims(const DepthwiseParams& p, int n, int c) {
  return {n, p.h, p.w, c, p.oh, p.ow, p.kh, p.kw, p.sh, p.sw, p.dh, p.dw, p.ph, p.pw, p.dm};
}

// (C*dm, KH, KW, 1) -> tap-major (KH*KW, C*dm), taps mirrored for a flipped kernel.
std::vector<float> taps_major(const float* w, const DepthwiseParams& p, int cm) {
  const int taps = p.kh * p.kw;
  std::vector<float> wt(static_cast<size_t>(taps) * cm);
  for (int j = 0; j < cm; ++j) {
    for (int t = 0; t < taps; ++t) {
      wt[static_cast<size_t>(t) * cm + j] = w[static_cast<size_t>(j) * taps +
                                                (p.flip ? taps - 1 - t : t)];
    }
  }
  return wt;
}

void require(const mx::array& a, const char* what) {
  if (a.dtype() != mx::float32 || !a.flags().row_contiguous) {
    throw std::invalid_argument(std::string("mlxnote depthwise: ") + what +
                                " must be a row-contiguous float32 array");
  }
}

const int64_t kGrain = 1;  // rows per chunk

// Each of `rows` rows through a row kernel, in parallel.
template <class F>
void each_row(int64_t rows, F row) {
  ThreadPool::instance().parallel_for(rows, kGrain, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      row(r);
    }
  });
}

// The forward (rows of y) or the input gradient (rows of dx): a row kernel over a or dy,
// with the tap-major weights.
void run_rows(decltype(&kernels::forward_row) row, int64_t rows_per_sample, const float* a,
              const float* w, float* out, const DepthwiseParams& p, int n, int c) {
  const auto d = dims(p, n, c);
  const auto wt = taps_major(w, p, c * p.dm);
  each_row(n * rows_per_sample, [&](int64_t r) {
    row(a, wt.data(), out, d, static_cast<int>(r / rows_per_sample),
        static_cast<int>(r % rows_per_sample));
  });
}

void run_weight_grad(const float* x, const float* dy, float* dw, const DepthwiseParams& p,
                     int n, int c) {
  const auto d = dims(p, n, c);
  const int cm = c * p.dm, taps = p.kh * p.kw;
  const size_t size = static_cast<size_t>(taps) * cm;
  auto& pool = ThreadPool::instance();
  // One float32 row buffer and one float64 total per worker: each output row's sum is
  // float32, the sum of rows is float64 (a long float32 chain would lose bits).
  std::vector<std::vector<float>> rows(pool.threads(), std::vector<float>(size));
  std::vector<std::vector<double>> totals(pool.threads(), std::vector<double>(size, 0.0));
  pool.parallel_for(static_cast<int64_t>(n) * p.oh, kGrain, [&](int64_t b, int64_t e,
                                                               int worker) {
    auto& row = rows[worker];
    auto& total = totals[worker];
    for (int64_t r = b; r < e; ++r) {
      std::fill(row.begin(), row.end(), 0.0f);
      kernels::weight_grad_row(x, dy, row.data(), d, static_cast<int>(r / p.oh),
                               static_cast<int>(r % p.oh));
      for (size_t i = 0; i < size; ++i) {
        total[i] += row[i];
      }
    }
  });
  // Back to (C*dm, KH, KW, 1), taps mirrored for a flipped kernel.
  for (int j = 0; j < cm; ++j) {
    for (int t = 0; t < taps; ++t) {
      double s = 0.0;
      for (const auto& total : totals) {
        s += total[static_cast<size_t>(t) * cm + j];
      }
      dw[static_cast<size_t>(j) * taps + (p.flip ? taps - 1 - t : t)] = static_cast<float>(s);
    }
  }
}

}  // namespace

void Depthwise::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& a = inputs[0];
  const auto& b = inputs[1];
  require(a, "the first input");
  require(b, "the second input");
  out.set_data(mx::allocator::malloc(out.nbytes()));
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.set_input_array(a);
  encoder.set_input_array(b);
  encoder.set_output_array(out);
  const int n = kind_ == DepthwiseKind::WeightGrad ? a.shape(0) : out.shape(0);
  const int c = kind_ == DepthwiseKind::Forward ? a.shape(-1)
                : kind_ == DepthwiseKind::InputGrad ? out.shape(-1)
                                                   : a.shape(-1);
  encoder.dispatch([pa = a.data<float>(), pb = b.data<float>(), po = out.data<float>(),
                    p = p_, kind = kind_, n, c]() {
    switch (kind) {
      case DepthwiseKind::Forward:
        run_rows(kernels::forward_row, p.oh, pa, pb, po, p, n, c);
        break;
      case DepthwiseKind::InputGrad:
        run_rows(kernels::input_grad_row, p.h, pa, pb, po, p, n, c);
        break;
      case DepthwiseKind::WeightGrad:
        run_weight_grad(pa, pb, po, p, n, c);
        break;
    }
  });
}

void Depthwise::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::runtime_error("mlxnote depthwise: CPU only (GPUs use MLX's own convolutions)");
}

std::vector<mx::Shape> Depthwise::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& a = inputs[0];
  const auto& b = inputs[1];
  switch (kind_) {
    case DepthwiseKind::Forward:
      return {{a.shape(0), p_.oh, p_.ow, b.shape(0)}};
    case DepthwiseKind::InputGrad:
      return {{a.shape(0), p_.h, p_.w, b.shape(0) / p_.dm}};
    default:
      return {{b.shape(-1), p_.kh, p_.kw, 1}};
  }
}

std::vector<mx::array> Depthwise::vjp(const std::vector<mx::array>& primals,
                                      const std::vector<mx::array>& cotangents,
                                      const std::vector<int>& argnums,
                                      const std::vector<mx::array>&) {
  const auto& a = primals[0];
  const auto& b = primals[1];
  const auto& ct = cotangents[0];
  std::vector<mx::array> out;
  for (int arg : argnums) {
    switch (kind_) {
      case DepthwiseKind::Forward:  // y = F(x, w)
        out.push_back(arg == 0 ? depthwise_input_grad(ct, b, p_, stream())
                               : depthwise_weight_grad(a, ct, p_, stream()));
        break;
      case DepthwiseKind::InputGrad:  // dx = G(dy, w)
        out.push_back(arg == 0 ? depthwise_forward(ct, b, p_, stream())
                               : depthwise_weight_grad(ct, a, p_, stream()));
        break;
      case DepthwiseKind::WeightGrad:  // dw = H(x, dy)
        out.push_back(arg == 0 ? depthwise_input_grad(b, ct, p_, stream())
                               : depthwise_forward(a, ct, p_, stream()));
        break;
    }
  }
  return out;
}

std::vector<mx::array> Depthwise::jvp(const std::vector<mx::array>& primals,
                                      const std::vector<mx::array>& tangents,
                                      const std::vector<int>& argnums) {
  // Bilinear: the tangent is the op applied with one argument replaced by its tangent.
  std::vector<mx::array> terms;
  for (size_t i = 0; i < argnums.size(); ++i) {
    auto args = primals;
    args[argnums[i]] = tangents[i];
    auto op = kind_ == DepthwiseKind::Forward   ? depthwise_forward
              : kind_ == DepthwiseKind::InputGrad ? depthwise_input_grad
                                                  : depthwise_weight_grad;
    terms.push_back(op(args[0], args[1], p_, stream()));
  }
  auto sum = terms[0];
  for (size_t i = 1; i < terms.size(); ++i) {
    sum = mx::add(sum, terms[i], stream());
  }
  return {sum};
}

std::pair<std::vector<mx::array>, std::vector<int>> Depthwise::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  // One op per entry of the mapped axis, stacked (correct for any mapped inputs).
  int size = -1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] >= 0) {
      size = inputs[i].shape(axes[i]);
    }
  }
  auto op = kind_ == DepthwiseKind::Forward   ? depthwise_forward
            : kind_ == DepthwiseKind::InputGrad ? depthwise_input_grad
                                                : depthwise_weight_grad;
  std::vector<mx::array> outs;
  for (int k = 0; k < size; ++k) {
    std::vector<mx::array> args;
    for (size_t i = 0; i < inputs.size(); ++i) {
      args.push_back(axes[i] >= 0 ? mx::take(inputs[i], k, axes[i], stream()) : inputs[i]);
    }
    outs.push_back(op(args[0], args[1], p_, stream()));
  }
  return {{mx::stack(outs, 0, stream())}, {0}};
}

const char* Depthwise::name() const {
  switch (kind_) {
    case DepthwiseKind::Forward:
      return "MlxnoteDepthwiseConv";
    case DepthwiseKind::InputGrad:
      return "MlxnoteDepthwiseConvInputGrad";
    default:
      return "MlxnoteDepthwiseConvWeightGrad";
  }
}

bool Depthwise::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const Depthwise*>(&other);
  return o != nullptr && o->kind_ == kind_ && o->p_ == p_;
}

namespace {

mx::array make(DepthwiseKind kind, const mx::array& a, const mx::array& b,
               const DepthwiseParams& p, mx::StreamOrDevice s) {
  auto stream = mx::to_stream(s);
  std::vector<mx::array> ins = {mx::contiguous(mx::astype(a, mx::float32, stream), false, stream),
                                mx::contiguous(mx::astype(b, mx::float32, stream), false, stream)};
  auto prim = std::make_shared<Depthwise>(stream, p, kind);
  auto shape = prim->output_shapes(ins)[0];
  return mx::array(std::move(shape), mx::float32, std::move(prim), std::move(ins));
}

}  // namespace

mx::array depthwise_forward(const mx::array& x, const mx::array& w, DepthwiseParams p,
                            mx::StreamOrDevice s) {
  return make(DepthwiseKind::Forward, x, w, p, s);
}

mx::array depthwise_input_grad(const mx::array& dy, const mx::array& w, DepthwiseParams p,
                               mx::StreamOrDevice s) {
  return make(DepthwiseKind::InputGrad, dy, w, p, s);
}

mx::array depthwise_weight_grad(const mx::array& x, const mx::array& dy, DepthwiseParams p,
                                mx::StreamOrDevice s) {
  return make(DepthwiseKind::WeightGrad, x, dy, p, s);
}

mx::array depthwise_conv(const mx::array& x, const mx::array& w,
                         const std::vector<int>& strides,
                         const std::vector<std::pair<int, int>>& padding,
                         const std::vector<int>& dilations, bool flip,
                         mx::StreamOrDevice s) {
  const int nd = x.ndim() - 2;
  if (nd < 1 || nd > 2 || w.ndim() != x.ndim() || static_cast<int>(strides.size()) != nd ||
      static_cast<int>(padding.size()) != nd || static_cast<int>(dilations.size()) != nd) {
    throw std::invalid_argument("mlxnote depthwise: a 1-D or 2-D input and matching arguments");
  }
  const int c = x.shape(-1);
  if (w.shape(-1) != 1 || w.shape(0) % c != 0) {
    throw std::invalid_argument("mlxnote depthwise: weight (C*dm, *kernel, 1) for C channels");
  }
  // 1-D as 2-D with a height of 1.
  auto x4 = nd == 2 ? x : mx::expand_dims(x, 1, s);
  auto w4 = nd == 2 ? w : mx::expand_dims(w, 1, s);
  const int off = 2 - nd;
  DepthwiseParams p;
  p.h = x4.shape(1);
  p.w = x4.shape(2);
  p.kh = w4.shape(1);
  p.kw = w4.shape(2);
  p.dm = w.shape(0) / c;
  p.sh = nd == 2 ? strides[0] : 1;
  p.sw = strides[1 - off];
  p.dh = nd == 2 ? dilations[0] : 1;
  p.dw = dilations[1 - off];
  p.ph = nd == 2 ? padding[0].first : 0;
  p.pw = padding[1 - off].first;
  const int hi_h = nd == 2 ? padding[0].second : 0;
  const int hi_w = padding[1 - off].second;
  p.oh = (p.h + p.ph + hi_h - (p.kh - 1) * p.dh - 1) / p.sh + 1;
  p.ow = (p.w + p.pw + hi_w - (p.kw - 1) * p.dw - 1) / p.sw + 1;
  p.flip = flip;
  if (p.oh < 1 || p.ow < 1) {
    throw std::invalid_argument("mlxnote depthwise: the input is smaller than the kernel");
  }
  auto y = depthwise_forward(x4, w4, p, s);
  return nd == 2 ? y : mx::squeeze(y, 1, s);
}

}  // namespace mlxnote
