#include "layernorm.h"

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/transforms.h"

#include "layernorm_kernels.h"
#include "pool.h"

namespace mlxnote {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("mlxnote layer_norm: " + what);
}

using Arrays = std::vector<mx::array>;

// ---- the same math with MLX ops (higher derivatives, jvp, vmap) ------------------------
mx::array row_mean(const mx::array& a, mx::Stream s) {
  return mx::mean(a, -1, true, s);
}

std::vector<int> leading_axes(const mx::array& x) {
  std::vector<int> axes(x.ndim() - 1);
  for (size_t i = 0; i < axes.size(); ++i) {
    axes[i] = static_cast<int>(i);
  }
  return axes;
}

// (xhat, rstd) of x.
std::pair<mx::array, mx::array> standardized(const mx::array& x, float eps, mx::Stream s) {
  auto xc = mx::subtract(x, row_mean(x, s), s);
  auto r = mx::rsqrt(mx::add(row_mean(mx::square(xc, s), s), mx::array(eps), s), s);
  return {mx::multiply(xc, r, s), r};
}

Arrays plain_forward(const LayerNormParams& p, const Arrays& in, mx::Stream s) {
  auto y = standardized(in[0], p.eps, s).first;
  size_t i = 1;
  if (p.has_g) {
    y = mx::multiply(y, in[i++], s);
  }
  if (p.has_b) {
    y = mx::add(y, in[i++], s);
  }
  return {y};
}

// in: x [, g], dy -> dx [, dg] [, db].
Arrays plain_backward(const LayerNormParams& p, const Arrays& in, mx::Stream s) {
  const auto& x = in[0];
  const auto& dy = in.back();
  auto [xhat, r] = standardized(x, p.eps, s);
  auto gdy = p.has_g ? mx::multiply(dy, in[1], s) : dy;
  auto dx = mx::multiply(
      mx::subtract(mx::subtract(gdy, row_mean(gdy, s), s),
                   mx::multiply(xhat, row_mean(mx::multiply(gdy, xhat, s), s), s), s),
      r, s);
  Arrays out{dx};
  const auto axes = leading_axes(x);
  if (p.has_g) {
    out.push_back(mx::sum(mx::multiply(dy, xhat, s), axes, false, s));
  }
  if (p.has_b) {
    out.push_back(mx::sum(dy, axes, false, s));
  }
  return out;
}

Arrays make(const LayerNormParams& p, bool backward, Arrays ins, mx::Stream s) {
  for (auto& a : ins) {
    a = mx::contiguous(a, false, s);
  }
  auto prim = std::make_shared<LayerNorm>(s, p, backward);
  auto shapes = prim->output_shapes(ins);
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  return mx::array::make_arrays(std::move(shapes), dtypes, prim, ins);
}

// ---- the CPU kernels -------------------------------------------------------------------
void forward(const LayerNormParams& p, const float* x, const float* g, const float* b,
             float* y, float* mean, float* rstd, int64_t rows, int n) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max(1, n));
  ThreadPool::instance().parallel_for(rows, grain, [&](int64_t lo, int64_t hi, int) {
    for (int64_t r = lo; r < hi; ++r) {
      kernels::layer_norm_row(x + r * n, g, b, p.eps, y + r * n, mean + r, rstd + r, n);
    }
  });
}

void backward(const float* x, const float* g, const float* mean, const float* rstd,
              const float* dy, float* dx, float* dg, float* db, int64_t rows, int n) {
  auto& pool = ThreadPool::instance();
  const int workers = pool.threads();
  const bool sums = dg != nullptr || db != nullptr;
  // Per worker: float partial sums over one chunk of rows, added into double totals.
  std::vector<std::vector<float>> part(workers, std::vector<float>(sums ? 2 * n : 0));
  std::vector<std::vector<double>> total(workers, std::vector<double>(sums ? 2 * n : 0, 0.0));
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max(1, n));
  pool.parallel_for(rows, grain, [&](int64_t lo, int64_t hi, int w) {
    float* pg = dg ? part[w].data() : nullptr;
    float* pb = db ? part[w].data() + n : nullptr;
    if (sums) {
      std::fill(part[w].begin(), part[w].end(), 0.0f);
    }
    for (int64_t r = lo; r < hi; ++r) {
      kernels::layer_norm_grad_row(x + r * n, g, dy + r * n, mean[r], rstd[r], dx + r * n, pg,
                                   pb, n);
    }
    for (size_t j = 0; j < part[w].size(); ++j) {
      total[w][j] += part[w][j];
    }
  });
  for (int j = 0; sums && j < n; ++j) {
    double sg = 0.0, sb = 0.0;
    for (int w = 0; w < workers; ++w) {
      sg += total[w][j];
      sb += total[w][n + j];
    }
    if (dg) {
      dg[j] = static_cast<float>(sg);
    }
    if (db) {
      db[j] = static_cast<float>(sb);
    }
  }
}

}  // namespace

void LayerNorm::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& encoder = mx::cpu::get_command_encoder(stream());
  std::vector<const float*> in;
  for (const auto& a : inputs) {
    if (a.dtype() != mx::float32 || !a.flags().row_contiguous) {
      fail("inputs must be row-contiguous float32 arrays");
    }
    encoder.set_input_array(a);
    in.push_back(a.data<float>());
  }
  std::vector<float*> out;
  for (auto& o : outputs) {
    o.set_data(mx::allocator::malloc(o.nbytes()));
    encoder.set_output_array(o);
    out.push_back(o.data<float>());
  }
  const int n = inputs[0].shape(-1);
  const int64_t rows = n ? static_cast<int64_t>(inputs[0].size() / n) : 0;
  encoder.dispatch([p = p_, bwd = backward_, in = std::move(in), out = std::move(out), n,
                    rows]() {
    size_t i = 1;
    const float* g = p.has_g ? in[i++] : nullptr;
    if (bwd) {
      const float* mean = in[i++];
      const float* rstd = in[i++];
      size_t o = 1;
      float* dg = p.has_g ? out[o++] : nullptr;
      float* db = p.has_b ? out[o++] : nullptr;
      backward(in[0], g, mean, rstd, in[i], out[0], dg, db, rows, n);
    } else {
      const float* b = p.has_b ? in[i++] : nullptr;
      forward(p, in[0], g, b, out[0], out[1], out[2], rows, n);
    }
  });
}

void LayerNorm::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error("mlxnote layer_norm: CPU only (GPUs use mx.fast.layer_norm)");
}

std::vector<mx::Shape> LayerNorm::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& x = inputs[0];
  if (backward_) {
    std::vector<mx::Shape> s{x.shape()};
    for (int k = 0; k < int(p_.has_g) + int(p_.has_b); ++k) {
      s.push_back({x.shape(-1)});
    }
    return s;
  }
  auto stat = x.shape();
  stat.back() = 1;
  return {x.shape(), stat, stat};
}

std::vector<mx::array> LayerNorm::vjp(const std::vector<mx::array>& primals,
                                      const std::vector<mx::array>& cotangents,
                                      const std::vector<int>& argnums,
                                      const std::vector<mx::array>& outputs) {
  auto s = stream();
  std::vector<mx::array> res;
  if (!backward_) {
    // x [, g] [, b]: the backward primitive gives dx [, dg] [, db] in that order. The row
    // statistics are internal outputs (their cotangents are zero).
    Arrays ins{primals[0]};
    if (p_.has_g) {
      ins.push_back(primals[1]);
    }
    ins.push_back(outputs[1]);  // mean
    ins.push_back(outputs[2]);  // rstd
    ins.push_back(cotangents[0]);
    auto grads = make(p_, true, ins, s);
    for (int arg : argnums) {
      res.push_back(grads[arg]);
    }
    return res;
  }
  // The backward's own gradient: the MLX-op form of (x [, g], dy) -> (dx [, dg] [, db]),
  // its statistics recomputed from x (so the mean/rstd inputs get none).
  const int ng = p_.has_g ? 1 : 0;
  Arrays args{primals[0]};
  if (p_.has_g) {
    args.push_back(primals[1]);
  }
  args.push_back(primals.back());
  auto p = p_;
  auto grads = mx::vjp([p, s](const Arrays& a) { return plain_backward(p, a, s); }, args,
                       cotangents).second;
  const int dy_at = static_cast<int>(primals.size()) - 1;
  for (int arg : argnums) {
    if (arg == 0 || (p_.has_g && arg == 1)) {
      res.push_back(grads[arg]);
    } else if (arg == dy_at) {
      res.push_back(grads[1 + ng]);
    } else {
      res.push_back(mx::zeros_like(primals[arg], s));
    }
  }
  return res;
}

std::vector<mx::array> LayerNorm::jvp(const std::vector<mx::array>& primals,
                                      const std::vector<mx::array>& tangents,
                                      const std::vector<int>& argnums) {
  auto s = stream();
  const Arrays t = full_tangents(primals, tangents, argnums, s);
  auto p = p_;
  if (!backward_) {
    auto y = mx::jvp([p, s](const Arrays& a) { return plain_forward(p, a, s); }, primals, t)
                 .second[0];
    auto stat_shape = primals[0].shape();
    stat_shape.back() = 1;
    // The statistics' tangents are not needed by anything that reads y.
    return {y, mx::zeros(stat_shape, mx::float32, s), mx::zeros(stat_shape, mx::float32, s)};
  }
  Arrays args{primals[0]}, targs{t[0]};
  if (p_.has_g) {
    args.push_back(primals[1]);
    targs.push_back(t[1]);
  }
  args.push_back(primals.back());
  targs.push_back(t.back());
  return mx::jvp([p, s](const Arrays& a) { return plain_backward(p, a, s); }, args, targs)
      .second;
}

std::pair<std::vector<mx::array>, std::vector<int>> LayerNorm::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  auto s = stream();
  // Mapped axes to the front; x's is one more leading axis. Mapped weights (or a mapped
  // backward) run the MLX-op form with the weights broadcast.
  auto ins = mapped_first(inputs, axes, s);
  const int size = ins[0].shape(0);
  const bool weights_mapped = std::any_of(axes.begin() + 1, axes.end(),
                                          [](int a) { return a >= 0; });
  if (!backward_ && !weights_mapped) {
    Arrays args{ins[0]};
    for (size_t i = 1; i < inputs.size(); ++i) {
      args.push_back(inputs[i]);
    }
    return {make(p_, false, args, s), {0, 0, 0}};
  }
  // The MLX-op form: weights (V, d) -> (V, 1, ..., 1, d) against x (V, ..., d).
  const int nd = static_cast<int>(ins[0].ndim());
  auto widen = [&](const mx::array& w) {
    auto shape = std::vector<int>(nd, 1);
    shape[0] = size;
    shape.back() = w.shape(-1);
    return mx::reshape(w, mx::Shape(shape.begin(), shape.end()), s);
  };
  if (!backward_) {
    Arrays args{ins[0]};
    for (size_t i = 1; i < ins.size(); ++i) {
      args.push_back(widen(ins[i]));
    }
    auto y = plain_forward(p_, args, s)[0];
    auto stat_shape = y.shape();
    stat_shape.back() = 1;
    return {{y, mx::zeros(stat_shape, mx::float32, s), mx::zeros(stat_shape, mx::float32, s)},
            {0, 0, 0}};
  }
  // Backward: per mapped entry (dg and db sum over that entry's rows only).
  Arrays outs_per[3];
  const int nout = 1 + int(p_.has_g) + int(p_.has_b);
  for (int k = 0; k < size; ++k) {
    Arrays args{mx::take(ins[0], k, 0, s)};
    if (p_.has_g) {
      args.push_back(mx::take(ins[1], k, 0, s));
    }
    args.push_back(mx::take(ins.back(), k, 0, s));
    auto o = plain_backward(p_, args, s);
    for (int j = 0; j < nout; ++j) {
      outs_per[j].push_back(o[j]);
    }
  }
  Arrays out;
  for (int j = 0; j < nout; ++j) {
    out.push_back(mx::stack(outs_per[j], 0, s));
  }
  return {out, std::vector<int>(nout, 0)};
}

bool LayerNorm::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const LayerNorm*>(&other);
  return o != nullptr && o->p_ == p_ && o->backward_ == backward_;
}

mx::array layer_norm(const mx::array& x, const std::optional<mx::array>& g,
                     const std::optional<mx::array>& b, float eps, mx::StreamOrDevice s) {
  if (x.ndim() < 1 || x.shape(-1) < 1) {
    fail("x (..., d) with d >= 1");
  }
  const int d = x.shape(-1);
  LayerNormParams p{g.has_value(), b.has_value(), eps};
  Arrays ins{x};
  for (const auto& w : {g, b}) {
    if (w) {
      if (w->ndim() != 1 || w->shape(0) != d) {
        fail("gamma and beta of shape (d,)");
      }
      ins.push_back(*w);
    }
  }
  for (const auto& a : ins) {
    if (a.dtype() != mx::float32) {
      fail("float32 inputs only");
    }
  }
  return make(p, false, ins, mx::to_stream(s))[0];
}

}  // namespace mlxnote
