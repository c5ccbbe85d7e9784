#include "depthwise.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/transforms.h"
#include "mlx/utils.h"

#include "batchnorm_kernels.h"  // column_sums
#include "columns.h"
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

// The register-blocked dm == 1 kernels apply (else the row kernels, any dm).
bool blocked(const DepthwiseParams& p) {
  return p.dm == 1 && p.kh <= kernels::kMaxKernelRows;
}

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

// Rows of a dm == 1 kernel split into segments of columns, so that a long 1-D row is
// several tasks (a busy core then holds up a short one, not a whole sequence).
struct Segments {
  int width, per_row;
  Segments(int columns, int c)
      : width(std::max(16, 16384 / std::max(c, 1))), per_row((columns + width - 1) / width) {}
};

// The forward with dm == 1 (the bias, when given, starts each accumulator).
void run_forward_dm1(const float* x, const float* w, const float* bias, float* y,
                     const DepthwiseParams& p, int n, int c) {
  const auto d = dims(p, n, c);
  const auto wt = taps_major(w, p, c);
  const Segments seg(p.ow, c);
  each_row(static_cast<int64_t>(n) * p.oh * seg.per_row, [&](int64_t u) {
    const int64_t r = u / seg.per_row;
    const int j0 = static_cast<int>(u % seg.per_row) * seg.width;
    kernels::forward_row_dm1(x, wt.data(), bias, y, d, static_cast<int>(r / p.oh),
                             static_cast<int>(r % p.oh), j0, std::min(p.ow, j0 + seg.width));
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
  const int n = kind_ == DepthwiseKind::WeightGrad ? a.shape(0) : out.shape(0);
  const int c = kind_ == DepthwiseKind::Forward ? a.shape(-1)
                : kind_ == DepthwiseKind::InputGrad ? out.shape(-1)
                                                   : a.shape(-1);
  encoder.dispatch([pa = a.data<float>(), pb = b.data<float>(), po = out.data<float>(), bias,
                    p = p_, kind = kind_, n, c]() {
    switch (kind) {
      case DepthwiseKind::Forward:
        if (blocked(p)) {
          run_forward_dm1(pa, pb, bias, po, p, n, c);
          break;
        }
        run_rows(kernels::forward_row, p.oh, pa, pb, po, p, n, c);
        if (bias != nullptr) {
          const int64_t rows = static_cast<int64_t>(n) * p.oh * p.ow, cm = c * p.dm;
          ThreadPool::instance().parallel_for(rows, 256, [&](int64_t r0, int64_t r1, int) {
            for (int64_t r = r0; r < r1; ++r) {
              for (int64_t j = 0; j < cm; ++j) {
                po[r * cm + j] += bias[j];
              }
            }
          });
        }
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
  if (kind_ == DepthwiseKind::Forward) {  // y = F(x, w) (+ bias): the fused backward
    int wants = 0;
    for (int arg : argnums) {
      wants |= arg == 0 ? kGradX : arg == 1 ? kGradW : kGradBias;
    }
    auto grads = depthwise_backward(a, b, ct, p_, wants, stream());
    for (int arg : argnums) {
      const int bit = arg == 0 ? kGradX : arg == 1 ? kGradW : kGradBias;
      int at = 0;
      for (int k = 1; k < bit; k <<= 1) {
        at += (wants & k) ? 1 : 0;
      }
      out.push_back(grads[at]);
    }
    return out;
  }
  for (int arg : argnums) {
    switch (kind_) {
      case DepthwiseKind::InputGrad:  // dx = G(dy, w)
        out.push_back(arg == 0 ? depthwise_forward(ct, b, p_, stream())
                               : depthwise_weight_grad(ct, a, p_, stream()));
        break;
      default:  // dw = H(x, dy)
        out.push_back(arg == 0 ? depthwise_input_grad(b, ct, p_, stream())
                               : depthwise_forward(a, ct, p_, stream()));
        break;
    }
  }
  return out;
}

namespace {

// The op of `kind` on (a, b), the forward with the bias when given.
mx::array apply(DepthwiseKind kind, const std::vector<mx::array>& args,
                const DepthwiseParams& p, mx::Stream s) {
  switch (kind) {
    case DepthwiseKind::Forward:
      return depthwise_forward(args[0], args[1], p, s,
                               args.size() > 2 ? std::optional<mx::array>(args[2]) : std::nullopt);
    case DepthwiseKind::InputGrad:
      return depthwise_input_grad(args[0], args[1], p, s);
    default:
      return depthwise_weight_grad(args[0], args[1], p, s);
  }
}

}  // namespace

std::vector<mx::array> Depthwise::jvp(const std::vector<mx::array>& primals,
                                      const std::vector<mx::array>& tangents,
                                      const std::vector<int>& argnums) {
  // Bilinear in (a, b): the tangent is the op applied with one argument replaced by its
  // tangent; the bias's tangent is added as it is.
  std::optional<mx::array> sum;
  for (size_t i = 0; i < argnums.size(); ++i) {
    std::optional<mx::array> term;
    if (argnums[i] == 2) {
      term = tangents[i];
    } else {
      std::vector<mx::array> args = {primals[0], primals[1]};
      args[argnums[i]] = tangents[i];
      term = apply(kind_, args, p_, stream());
    }
    sum = sum ? mx::add(*sum, *term, stream()) : *term;
  }
  return {mx::broadcast_to(*sum, output_shapes(primals)[0], stream())};
}

std::pair<std::vector<mx::array>, std::vector<int>> Depthwise::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  return vmap_entries(inputs, axes, stream(), [&](const std::vector<mx::array>& args) {
    return std::vector<mx::array>{apply(kind_, args, p_, stream())};
  });
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

mx::array as_f32(const mx::array& a, mx::Stream s) {
  return mx::contiguous(mx::astype(a, mx::float32, s), false, s);
}

mx::array make(DepthwiseKind kind, const mx::array& a, const mx::array& b,
               const DepthwiseParams& p, mx::StreamOrDevice s,
               const std::optional<mx::array>& bias = std::nullopt) {
  auto stream = mx::to_stream(s);
  std::vector<mx::array> ins = {as_f32(a, stream), as_f32(b, stream)};
  if (bias) {
    if (bias->ndim() != 1 || bias->shape(0) != b.shape(0)) {
      throw std::invalid_argument("mlxnote depthwise: the bias must be (C*dm,)");
    }
    ins.push_back(as_f32(*bias, stream));
  }
  auto prim = std::make_shared<Depthwise>(stream, p, kind);
  auto shape = prim->output_shapes(ins)[0];
  return mx::array(std::move(shape), mx::float32, std::move(prim), std::move(ins));
}

// The rows (n, r) of an (N, R, W, C) array as contiguous (W, C) floats: in place when its
// rows are, else gathered through its strides into `scratch` (a broadcast cotangent, the
// gradient of a sum or a mean, is never written out whole).
struct Rows {
  const float* data;
  int64_t s0, s1, s2, s3;
  int w, c;
  bool in_place;

  explicit Rows(const mx::array& a)
      : data(a.data<float>()), s0(a.strides()[0]), s1(a.strides()[1]), s2(a.strides()[2]),
        s3(a.strides()[3]), w(a.shape(2)), c(a.shape(3)),
        in_place(s3 == 1 && (s2 == c || w == 1)) {}

  // Row (n, r); column j at the result + j * c for j in [lo, hi) (scratch: w * c floats).
  const float* row(int n, int r, int lo, int hi, float* scratch) const {
    const float* base = data + n * s0 + r * s1;
    if (in_place) {
      return base;
    }
    for (int j = std::max(lo, 0); j < std::min(hi, w); ++j) {
      copy_strided(base + j * s2, s3, c, scratch + static_cast<int64_t>(j) * c);
    }
    return scratch;
  }
};

// The fused backward with dm == 1: one task per segment of columns of an input row (n, ih)
// for dx and dw (the dy rows its taps reach, read once for both) and of a dy row (n, r) for
// the bias gradient; dw and db summed per task in float32 and over tasks in float64 per
// worker.
void run_backward_dm1(const float* x, const float* w, const Rows& dy, float* dx, float* dw,
                      float* db, const DepthwiseParams& p, int n, int c) {
  const auto d = dims(p, n, c);
  const auto wt = taps_major(w, p, c);
  const int taps = p.kh * p.kw;
  const size_t size = static_cast<size_t>(taps + 1) * c;  // dw (taps x c), then db (c)
  const int per_sample = std::max(p.h, p.oh);
  const Segments seg(std::max(p.w, p.ow), c);
  // the dy columns a segment [j0, j1) reads: its dx taps' and its own (dw, db)
  auto dy_cols = [&](int j0, int j1) {
    const int reach = (p.kw - 1) * p.dw;
    return std::pair<int, int>(std::min(j0, (j0 + p.pw - reach) / p.sw - 1),
                               std::max(j1, (j1 - 1 + p.pw) / p.sw + 1));
  };
  auto& pool = ThreadPool::instance();
  const size_t row = static_cast<size_t>(p.ow) * c;
  std::vector<std::vector<float>> parts(pool.threads(), std::vector<float>(size));
  std::vector<std::vector<double>> totals(pool.threads(), std::vector<double>(size, 0.0));
  const bool sums = dw != nullptr || db != nullptr;
  pool.parallel_for(static_cast<int64_t>(n) * per_sample * seg.per_row, kGrain,
                    [&](int64_t b, int64_t e, int worker) {
    // a strided dy's rows are gathered here (one buffer per pool thread, kept between calls)
    thread_local std::vector<float> scratch;
    if (!dy.in_place && scratch.size() < row * (p.kh + 1)) {
      scratch.resize(row * (p.kh + 1));
    }
    float* buf = scratch.data();
    auto& part = parts[worker];
    auto& total = totals[worker];
    std::vector<const float*> rows(p.kh);
    for (int64_t task = b; task < e; ++task) {
      const int64_t u = task / seg.per_row;
      const int j0 = static_cast<int>(task % seg.per_row) * seg.width, j1 = j0 + seg.width;
      const auto [lo, hi] = dy_cols(j0, j1);
      const int ni = static_cast<int>(u / per_sample), r = static_cast<int>(u % per_sample);
      if (sums) {
        std::fill(part.begin(), part.end(), 0.0f);
      }
      if (r < p.h && (dx != nullptr || dw != nullptr)) {
        for (int kh = 0; kh < p.kh; ++kh) {
          const int t = r + p.ph - kh * p.dh;
          rows[kh] = t < 0 || t % p.sh != 0 || t / p.sh >= p.oh
                         ? nullptr
                         : dy.row(ni, t / p.sh, lo, hi, buf + row * kh);
        }
        kernels::backward_row_dm1(x, wt.data(), rows.data(), dx,
                                  dw != nullptr ? part.data() : nullptr, d, ni, r, j0, j1);
      }
      if (r < p.oh && db != nullptr && j0 < p.ow) {
        const int e1 = std::min(j1, p.ow);
        const float* g = dy.row(ni, r, j0, e1, buf + row * p.kh);
        kernels::column_sums(g + static_cast<int64_t>(j0) * c,
                             part.data() + taps * c, e1 - j0, c);
      }
      if (sums) {
        for (size_t i = 0; i < size; ++i) {
          total[i] += part[i];
        }
      }
    }
  });
  for (int j = 0; j < c; ++j) {
    for (int t = 0; dw != nullptr && t < taps; ++t) {
      double s = 0.0;
      for (const auto& total : totals) {
        s += total[static_cast<size_t>(t) * c + j];
      }
      dw[static_cast<size_t>(j) * taps + (p.flip ? taps - 1 - t : t)] = static_cast<float>(s);
    }
    if (db != nullptr) {
      double s = 0.0;
      for (const auto& total : totals) {
        s += total[static_cast<size_t>(taps) * c + j];
      }
      db[j] = static_cast<float>(s);
    }
  }
}

// The MLX-op form of the fused backward: the gradient primitives and a sum.
std::vector<mx::array> plain_backward(const std::vector<mx::array>& in, const DepthwiseParams& p,
                                      int wants, mx::Stream s) {
  std::vector<mx::array> out;
  if (wants & kGradX) {
    out.push_back(depthwise_input_grad(in[2], in[1], p, s));
  }
  if (wants & kGradW) {
    out.push_back(depthwise_weight_grad(in[0], in[2], p, s));
  }
  if (wants & kGradBias) {
    out.push_back(mx::sum(mx::astype(in[2], mx::float32, s), {0, 1, 2}, false, s));
  }
  return out;
}

}  // namespace

void DepthwiseBackward::eval_cpu(const std::vector<mx::array>& inputs,
                                 std::vector<mx::array>& outputs) {
  const auto& x = inputs[0];
  const auto& w = inputs[1];
  const auto& dy = inputs[2];
  require(x, "x");
  require(w, "w");
  if (dy.dtype() != mx::float32) {
    throw std::invalid_argument("mlxnote depthwise: dy must be float32");
  }
  auto& encoder = mx::cpu::get_command_encoder(stream());
  for (const auto& in : inputs) {
    encoder.set_input_array(in);
  }
  float* ptrs[3] = {nullptr, nullptr, nullptr};
  int at = 0;
  for (int k = 0; k < 3; ++k) {
    if (wants_ & (1 << k)) {
      auto& o = outputs[at++];
      o.set_data(mx::allocator::malloc(o.nbytes()));
      encoder.set_output_array(o);
      ptrs[k] = o.data<float>();
    }
  }
  const int n = x.shape(0), c = x.shape(-1);
  encoder.dispatch([px = x.data<float>(), pw = w.data<float>(), rows = Rows(dy), ptrs,
                    p = p_, n, c]() {
    if (blocked(p)) {
      run_backward_dm1(px, pw, rows, ptrs[0], ptrs[1], ptrs[2], p, n, c);
      return;
    }
    // dm > 1 or a tall kernel (dy made contiguous by depthwise_backward): the row kernels of the
    // gradient primitives.
    if (ptrs[0] != nullptr) {
      run_rows(kernels::input_grad_row, p.h, rows.data, pw, ptrs[0], p, n, c);
    }
    if (ptrs[1] != nullptr) {
      run_weight_grad(px, rows.data, ptrs[1], p, n, c);
    }
    if (ptrs[2] != nullptr) {
      column_totals(rows.data, static_cast<int64_t>(n) * p.oh * p.ow, c * p.dm, ptrs[2]);
    }
  });
}

void DepthwiseBackward::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error("mlxnote depthwise: CPU only (GPUs use MLX's own convolutions)");
}

std::vector<mx::Shape> DepthwiseBackward::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& x = inputs[0];
  const auto& w = inputs[1];
  std::vector<mx::Shape> out;
  if (wants_ & kGradX) {
    out.push_back(x.shape());
  }
  if (wants_ & kGradW) {
    out.push_back(w.shape());
  }
  if (wants_ & kGradBias) {
    out.push_back({w.shape(0)});
  }
  return out;
}

std::vector<mx::array> DepthwiseBackward::vjp(const std::vector<mx::array>& primals,
                                              const std::vector<mx::array>& cotangents,
                                              const std::vector<int>& argnums,
                                              const std::vector<mx::array>&) {
  auto s = stream();
  auto p = p_;
  const int wants = wants_;
  auto grads = mx::vjp([p, wants, s](const std::vector<mx::array>& a) {
                         return plain_backward(a, p, wants, s);
                       },
                       primals, cotangents)
                   .second;
  std::vector<mx::array> out;
  for (int arg : argnums) {
    out.push_back(grads[arg]);
  }
  return out;
}

std::vector<mx::array> DepthwiseBackward::jvp(const std::vector<mx::array>& primals,
                                              const std::vector<mx::array>& tangents,
                                              const std::vector<int>& argnums) {
  auto s = stream();
  auto p = p_;
  const int wants = wants_;
  return mx::jvp([p, wants, s](const std::vector<mx::array>& a) {
                   return plain_backward(a, p, wants, s);
                 },
                 primals, full_tangents(primals, tangents, argnums, s))
      .second;
}

std::pair<std::vector<mx::array>, std::vector<int>> DepthwiseBackward::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  return vmap_entries(inputs, axes, stream(), [&](const std::vector<mx::array>& a) {
    return depthwise_backward(a[0], a[1], a[2], p_, wants_, stream());
  });
}

bool DepthwiseBackward::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const DepthwiseBackward*>(&other);
  return o != nullptr && o->p_ == p_ && o->wants_ == wants_;
}

mx::array depthwise_forward(const mx::array& x, const mx::array& w, DepthwiseParams p,
                            mx::StreamOrDevice s, const std::optional<mx::array>& bias) {
  return make(DepthwiseKind::Forward, x, w, p, s, bias);
}

mx::array depthwise_input_grad(const mx::array& dy, const mx::array& w, DepthwiseParams p,
                               mx::StreamOrDevice s) {
  return make(DepthwiseKind::InputGrad, dy, w, p, s);
}

mx::array depthwise_weight_grad(const mx::array& x, const mx::array& dy, DepthwiseParams p,
                                mx::StreamOrDevice s) {
  return make(DepthwiseKind::WeightGrad, x, dy, p, s);
}

std::vector<mx::array> depthwise_backward(const mx::array& x, const mx::array& w,
                                          const mx::array& dy, DepthwiseParams p, int wants,
                                          mx::StreamOrDevice s) {
  auto stream = mx::to_stream(s);
  // dy as it is (strided rows are read in place) unless the dm > 1 kernels need it whole.
  auto g = mx::astype(dy, mx::float32, stream);
  if (!blocked(p)) {
    g = mx::contiguous(g, false, stream);
  }
  std::vector<mx::array> ins = {as_f32(x, stream), as_f32(w, stream), g};
  auto prim = std::make_shared<DepthwiseBackward>(stream, p, wants);
  auto shapes = prim->output_shapes(ins);
  return mx::array::make_arrays(std::move(shapes),
                                std::vector<mx::Dtype>(shapes.size(), mx::float32),
                                std::move(prim), std::move(ins));
}

mx::array depthwise_conv(const mx::array& x, const mx::array& w,
                         const std::vector<int>& strides,
                         const std::vector<std::pair<int, int>>& padding,
                         const std::vector<int>& dilations, bool flip,
                         const std::optional<mx::array>& bias, mx::StreamOrDevice s) {
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
  auto y = depthwise_forward(x4, w4, p, s, bias);
  return nd == 2 ? y : mx::squeeze(y, 1, s);
}

}  // namespace mlxnote
