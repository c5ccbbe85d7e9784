#include "batchnorm.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/transforms.h"

#include "batchnorm_kernels.h"
#include "pool.h"

namespace mlxnote {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("mlxnote batch_norm_train: " + what);
}

using Arrays = std::vector<mx::array>;

// ---- the same math with MLX ops (higher derivatives, jvp, vmap) ------------------------
// Statistics over every axis but the last `keep` ones (keep = 2 under vmap: the mapped
// axis is the first and is kept too, moved next to the channels by the caller).
std::vector<int> stat_axes(const mx::array& x, int skip_front) {
  std::vector<int> axes;
  for (int i = skip_front; i + 1 < static_cast<int>(x.ndim()); ++i) {
    axes.push_back(i);
  }
  return axes;
}

Arrays plain_forward(const Arrays& in, float eps, int skip_front, mx::Stream s) {
  const auto& x = in[0];
  const auto axes = stat_axes(x, skip_front);
  auto m = mx::mean(x, axes, true, s);
  auto v = mx::mean(mx::square(mx::subtract(x, m, s), s), axes, true, s);
  auto a = mx::multiply(in[1], mx::rsqrt(mx::add(v, mx::array(eps), s), s), s);
  auto y = mx::add(mx::multiply(x, a, s), mx::subtract(in[2], mx::multiply(m, a, s), s), s);
  return {y, m, v};
}

// (x, g, dy) -> (dx, dg, db).
Arrays plain_backward(const Arrays& in, float eps, int skip_front, mx::Stream s) {
  const auto& x = in[0];
  const auto& g = in[1];
  const auto& dy = in[2];
  const auto axes = stat_axes(x, skip_front);
  auto m = mx::mean(x, axes, true, s);
  auto xc = mx::subtract(x, m, s);
  auto r = mx::rsqrt(mx::add(mx::mean(mx::square(xc, s), axes, true, s), mx::array(eps), s), s);
  const double n = static_cast<double>(x.size()) / m.size();
  auto db = mx::sum(dy, axes, true, s);
  auto dg = mx::multiply(mx::sum(mx::multiply(dy, xc, s), axes, true, s), r, s);
  auto a = mx::multiply(g, r, s);
  auto inv_n = mx::array(static_cast<float>(1.0 / n));
  auto dx = mx::subtract(
      mx::subtract(mx::multiply(dy, a, s),
                   mx::multiply(xc, mx::multiply(mx::multiply(a, r, s),
                                                 mx::multiply(dg, inv_n, s), s), s), s),
      mx::multiply(a, mx::multiply(db, inv_n, s), s), s);
  return {dx, dg, db};
}

// ---- the CPU kernels -------------------------------------------------------------------
// Column sums of `pass` over rows [0, rows), into `out` (2 * c values when `two`).
template <class Pass>
void column_reduce(int64_t rows, int c, bool two, Pass pass, std::vector<double>& out) {
  auto& pool = ThreadPool::instance();
  const int workers = pool.threads();
  const int width = two ? 2 * c : c;
  std::vector<std::vector<float>> part(workers, std::vector<float>(width));
  std::vector<std::vector<double>> total(workers, std::vector<double>(width, 0.0));
  // Chunks of about 64K floats (a float partial per chunk, then double).
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max(1, c));
  pool.parallel_for(rows, grain, [&](int64_t lo, int64_t hi, int w) {
    std::fill(part[w].begin(), part[w].end(), 0.0f);
    pass(lo, static_cast<int>(hi - lo), part[w].data());
    for (int j = 0; j < width; ++j) {
      total[w][j] += part[w][j];
    }
  });
  out.assign(width, 0.0);
  for (const auto& t : total) {
    for (int j = 0; j < width; ++j) {
      out[j] += t[j];
    }
  }
}

template <class Pass>
void each_rows(int64_t rows, int c, Pass pass) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max(1, c));
  ThreadPool::instance().parallel_for(rows, grain, [&](int64_t lo, int64_t hi, int) {
    pass(lo, static_cast<int>(hi - lo));
  });
}

void forward(const float* x, const float* g, const float* b, float eps, float* y,
             float* mean, float* var, int64_t rows, int c) {
  std::vector<double> sums;
  column_reduce(rows, c, false, [&](int64_t lo, int n, float* acc) {
    kernels::column_sums(x + lo * c, nullptr, false, acc, n, c);
  }, sums);
  for (int j = 0; j < c; ++j) {
    mean[j] = static_cast<float>(sums[j] / rows);
  }
  column_reduce(rows, c, false, [&](int64_t lo, int n, float* acc) {
    kernels::column_sums(x + lo * c, mean, true, acc, n, c);
  }, sums);
  std::vector<float> a(c), sh(c);
  for (int j = 0; j < c; ++j) {
    var[j] = static_cast<float>(sums[j] / rows);
    a[j] = g[j] / std::sqrt(var[j] + eps);
    sh[j] = b[j] - mean[j] * a[j];
  }
  each_rows(rows, c, [&](int64_t lo, int n) {
    kernels::scale_shift(x + lo * c, a.data(), sh.data(), y + lo * c, n, c);
  });
}

void backward(const float* x, const float* g, const float* mean, const float* var,
              const float* dy, float eps, float* dx, float* dg, float* db, int64_t rows, int c) {
  std::vector<double> sums;
  column_reduce(rows, c, true, [&](int64_t lo, int n, float* acc) {
    kernels::column_grad_sums(x + lo * c, dy + lo * c, mean, acc, n, c);
  }, sums);
  // dx = a (dy - db/n - xhat dg/n) = dy * a + x * p + q.
  std::vector<float> a(c), p(c), q(c);
  const double n = static_cast<double>(rows);
  for (int j = 0; j < c; ++j) {
    const double r = 1.0 / std::sqrt(static_cast<double>(var[j]) + eps);
    const double dgj = sums[c + j] * r;
    db[j] = static_cast<float>(sums[j]);
    dg[j] = static_cast<float>(dgj);
    const double aj = g[j] * r;
    const double pj = -aj * r * dgj / n;
    a[j] = static_cast<float>(aj);
    p[j] = static_cast<float>(pj);
    q[j] = static_cast<float>(-aj * sums[j] / n - mean[j] * pj);
  }
  each_rows(rows, c, [&](int64_t lo, int k) {
    kernels::scale_shift2(x + lo * c, dy + lo * c, a.data(), p.data(), q.data(), dx + lo * c,
                          k, c);
  });
}

Arrays make(float eps, bool backward, Arrays ins, mx::Stream s) {
  for (auto& a : ins) {
    a = mx::contiguous(a, false, s);
  }
  auto prim = std::make_shared<BatchNorm>(s, eps, backward);
  auto shapes = prim->output_shapes(ins);
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  return mx::array::make_arrays(std::move(shapes), dtypes, prim, ins);
}

}  // namespace

void BatchNorm::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
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
  const int c = inputs[0].shape(-1);
  const int64_t rows = static_cast<int64_t>(inputs[0].size() / c);
  encoder.dispatch([eps = eps_, bwd = backward_, in = std::move(in), out = std::move(out), c,
                    rows]() {
    if (bwd) {
      backward(in[0], in[1], in[2], in[3], in[4], eps, out[0], out[1], out[2], rows, c);
    } else {
      forward(in[0], in[1], in[2], eps, out[0], out[1], out[2], rows, c);
    }
  });
}

void BatchNorm::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error("mlxnote batch_norm_train: CPU only");
}

std::vector<mx::Shape> BatchNorm::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& x = inputs[0];
  const mx::Shape ch{x.shape(-1)};
  return {x.shape(), ch, ch};
}

std::vector<mx::array> BatchNorm::vjp(const std::vector<mx::array>& primals,
                                      const std::vector<mx::array>& cotangents,
                                      const std::vector<int>& argnums,
                                      const std::vector<mx::array>& outputs) {
  auto s = stream();
  std::vector<mx::array> res;
  if (!backward_) {
    // The statistics are for the moving averages (used under stop_gradient): their
    // cotangents are not propagated.
    auto grads = make(eps_, true, {primals[0], primals[1], outputs[1], outputs[2],
                                   cotangents[0]}, s);
    for (int arg : argnums) {
      res.push_back(grads[arg]);
    }
    return res;
  }
  // The backward's own gradient: its MLX-op form of (x, g, dy), statistics recomputed
  // from x (so the mean/var inputs get none).
  const float eps = eps_;
  const Arrays args{primals[0], primals[1], primals[4]};
  Arrays cts{cotangents[0], mx::reshape(cotangents[1], {1, -1}, s),
             mx::reshape(cotangents[2], {1, -1}, s)};
  auto x2 = mx::reshape(args[0], {-1, args[0].shape(-1)}, s);
  auto dy2 = mx::reshape(args[2], {-1, args[2].shape(-1)}, s);
  auto grads = mx::vjp([eps, s](const Arrays& a) {
    auto o = plain_backward({a[0], mx::reshape(a[1], {1, -1}, s), a[2]}, eps, 0, s);
    return Arrays{o[0], o[1], o[2]};
  }, {x2, args[1], dy2}, {mx::reshape(cts[0], x2.shape(), s), cts[1], cts[2]}).second;
  for (int arg : argnums) {
    if (arg == 0) {
      res.push_back(mx::reshape(grads[0], primals[0].shape(), s));
    } else if (arg == 1) {
      res.push_back(grads[1]);
    } else if (arg == 4) {
      res.push_back(mx::reshape(grads[2], primals[4].shape(), s));
    } else {
      res.push_back(mx::zeros_like(primals[arg], s));
    }
  }
  return res;
}

std::vector<mx::array> BatchNorm::jvp(const std::vector<mx::array>& primals,
                                      const std::vector<mx::array>& tangents,
                                      const std::vector<int>& argnums) {
  auto s = stream();
  Arrays t;
  for (const auto& a : primals) {
    t.push_back(mx::zeros_like(a, s));
  }
  for (size_t i = 0; i < argnums.size(); ++i) {
    t[argnums[i]] = tangents[i];
  }
  const float eps = eps_;
  const int c = primals[0].shape(-1);
  auto flat = [&](const mx::array& a) { return mx::reshape(a, {-1, c}, s); };
  auto row = [&](const mx::array& a) { return mx::reshape(a, {1, c}, s); };
  if (!backward_) {
    auto out = mx::jvp([eps, s](const Arrays& a) { return plain_forward(a, eps, 0, s); },
                       {flat(primals[0]), row(primals[1]), row(primals[2])},
                       {flat(t[0]), row(t[1]), row(t[2])}).second;
    return {mx::reshape(out[0], primals[0].shape(), s), mx::reshape(out[1], {c}, s),
            mx::reshape(out[2], {c}, s)};
  }
  auto out = mx::jvp([eps, s](const Arrays& a) { return plain_backward(a, eps, 0, s); },
                     {flat(primals[0]), row(primals[1]), flat(primals[4])},
                     {flat(t[0]), row(t[1]), flat(t[4])}).second;
  return {mx::reshape(out[0], primals[0].shape(), s), mx::reshape(out[1], {c}, s),
          mx::reshape(out[2], {c}, s)};
}

std::pair<std::vector<mx::array>, std::vector<int>> BatchNorm::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  // Per mapped entry the statistics are over its own rows: the MLX-op form over
  // (V, R, C), the mapped axis kept.
  auto s = stream();
  int size = 1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] >= 0) {
      size = inputs[i].shape(axes[i]);
    }
  }
  const int c = inputs[0].shape(-1);
  Arrays ins;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto a = axes[i] >= 0 ? mx::moveaxis(inputs[i], axes[i], 0, s)
                          : mx::expand_dims(inputs[i], 0, s);
    auto shape = a.shape();
    shape[0] = size;
    a = mx::broadcast_to(a, shape, s);
    // Rows (V, R, C) for x-shaped inputs, (V, 1, C) for per-channel ones.
    const bool per_channel = a.ndim() == 2;
    ins.push_back(mx::reshape(a, {size, per_channel ? 1 : -1, c}, s));
  }
  Arrays out;
  if (!backward_) {
    out = plain_forward({ins[0], ins[1], ins[2]}, eps_, 1, s);
  } else {
    out = plain_backward({ins[0], ins[1], ins[4]}, eps_, 1, s);
  }
  auto xshape = inputs[0].shape();
  if (axes[0] >= 0) {
    xshape.erase(xshape.begin() + axes[0]);
  }
  xshape.insert(xshape.begin(), size);
  return {{mx::reshape(out[0], xshape, s), mx::reshape(out[1], {size, c}, s),
           mx::reshape(out[2], {size, c}, s)},
          {0, 0, 0}};
}

bool BatchNorm::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const BatchNorm*>(&other);
  return o != nullptr && o->eps_ == eps_ && o->backward_ == backward_;
}

std::vector<mx::array> batch_norm_train(const mx::array& x, const mx::array& g,
                                        const mx::array& b, float eps, mx::StreamOrDevice s) {
  if (x.ndim() < 2 || x.shape(-1) < 1 || x.size() / x.shape(-1) < 1) {
    fail("x (..., C) with at least one row and one channel");
  }
  const int c = x.shape(-1);
  if (g.ndim() != 1 || b.ndim() != 1 || g.shape(0) != c || b.shape(0) != c) {
    fail("gamma and beta of shape (C,)");
  }
  for (const auto& a : {x, g, b}) {
    if (a.dtype() != mx::float32) {
      fail("float32 inputs only");
    }
  }
  return make(eps, false, {x, g, b}, mx::to_stream(s));
}

}  // namespace mlxnote
