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

[[noreturn]] void fail(const char* who, const std::string& what) {
  throw std::invalid_argument(std::string("mlxnote ") + who + ": " + what);
}

using Arrays = std::vector<mx::array>;

// ---- the same math with MLX ops (higher derivatives, jvp, vmap) ------------------------
// The first `lead` axes of x are its samples (a vmapped axis, then group norm's batch
// axis); x is viewed as (samples, rows, G, k) and g/b (C) or, mapped, (V, C) as
// (samples or 1, 1, G, k).
struct Form {
  float eps;
  bool per_sample;
  int k;
  int mapped;  // 1 under vmap (the mapped axis first in every input)

  int lead() const { return mapped + (per_sample ? 1 : 0); }

  int samples(const mx::array& x, int from = 0) const {
    int n = 1;
    for (int i = from; i < lead(); ++i) {
      n *= x.shape(i);
    }
    return n;
  }

  mx::array view(const mx::array& x, mx::Stream s) const {
    const int c = x.shape(-1);
    return mx::reshape(x, {samples(x), -1, c / k, k}, s);
  }

  mx::array view_channels(const mx::array& g, const mx::array& x, mx::Stream s) const {
    const int c = g.shape(-1);
    if (!mapped) {
      return mx::reshape(g, {1, 1, c / k, k}, s);
    }
    const int v = g.shape(0);
    const int n = samples(x, 1);  // samples within one mapped entry
    auto gb = mx::broadcast_to(mx::reshape(g, {v, 1, c}, s), {v, n, c}, s);
    return mx::reshape(gb, {v * n, 1, c / k, k}, s);
  }

  // The statistics' shape: the sample axes, then the groups.
  mx::Shape stat_shape(const mx::array& x) const {
    mx::Shape shape(x.shape().begin(), x.shape().begin() + lead());
    shape.push_back(x.shape(-1) / k);
    return shape;
  }

  // Per-sample (samples, 1, G, k) channel sums to (C) or, mapped, (V, C).
  mx::array channel_total(const mx::array& t, const mx::array& x, mx::Stream s) const {
    const int c = x.shape(-1);
    if (!mapped) {
      return mx::reshape(mx::sum(t, 0, false, s), {c}, s);
    }
    return mx::sum(mx::reshape(t, {x.shape(0), -1, c}, s), 1, false, s);
  }

  Arrays forward(const Arrays& in, mx::Stream s) const {
    const auto& x = in[0];
    auto x4 = view(x, s);
    auto m = mx::mean(x4, {1, 3}, true, s);
    auto v = mx::mean(mx::square(mx::subtract(x4, m, s), s), {1, 3}, true, s);
    auto a = mx::multiply(view_channels(in[1], x, s),
                          mx::rsqrt(mx::add(v, mx::array(eps), s), s), s);
    auto c = mx::subtract(view_channels(in[2], x, s), mx::multiply(m, a, s), s);
    auto y = mx::add(mx::multiply(x4, a, s), c, s);
    return {mx::reshape(y, x.shape(), s), mx::reshape(m, stat_shape(x), s),
            mx::reshape(v, stat_shape(x), s)};
  }

  // (x, g, dy) -> (dx, dg, db): dx = r (dxh - mean(dxh) - xc r mean(dxh xc r)), dxh = dy g.
  Arrays backward(const Arrays& in, mx::Stream s) const {
    const auto& x = in[0];
    auto x4 = view(x, s);
    auto dy4 = view(in[2], s);
    auto g4 = view_channels(in[1], x, s);
    auto m = mx::mean(x4, {1, 3}, true, s);
    auto xc = mx::subtract(x4, m, s);
    auto r = mx::rsqrt(mx::add(mx::mean(mx::square(xc, s), {1, 3}, true, s), mx::array(eps), s),
                       s);
    auto db = mx::sum(dy4, 1, true, s);
    auto dg = mx::multiply(mx::sum(mx::multiply(dy4, xc, s), 1, true, s), r, s);
    auto dxh = mx::multiply(dy4, g4, s);
    auto mean_dxh = mx::mean(dxh, {1, 3}, true, s);
    auto mean_dxh_xh = mx::multiply(mx::mean(mx::multiply(dxh, xc, s), {1, 3}, true, s), r, s);
    auto dx = mx::multiply(
        r, mx::subtract(mx::subtract(dxh, mean_dxh, s),
                        mx::multiply(mx::multiply(xc, r, s), mean_dxh_xh, s), s), s);
    return {mx::reshape(dx, x.shape(), s), channel_total(dg, x, s), channel_total(db, x, s)};
  }
};

// ---- the CPU kernels -------------------------------------------------------------------
// x as n samples of `rows` rows of c channels.
struct Rows {
  int64_t n, rows;
  int c;
};

// Rows per chunk of a column sum: about 64K floats (a float partial per chunk, then double).
int64_t chunk_rows(int c) {
  return std::max<int64_t>(1, 65536 / std::max(1, c));
}

// A chunk reduction from a float pass: pass(sample, first_row, count, part) adds `count`
// rows into the zeroed float partial `part` (width values), which is then added into the
// double totals.
template <class Pass>
auto summed(Pass pass, int width) {
  return [pass, width](int64_t smp, int64_t row, int n, float* part, double* out) mutable {
    std::fill(part, part + width, 0.0f);
    pass(smp, row, n, part);
    for (int j = 0; j < width; ++j) {
      out[j] += part[j];
    }
  };
}

// Per-sample column reductions over the whole pool, the work items (sample, chunk) so that
// one sample still uses every core: chunk(sample, first_row, count, part, totals) adds its
// rows into the sample's `width` double totals, out[sample * width + j] (part: `scratch`
// floats per worker, default `width`).
template <class Chunk>
void column_reduce(const Rows& v, int width, Chunk chunk, std::vector<double>& out,
                   int scratch = 0) {
  auto& pool = ThreadPool::instance();
  const int workers = pool.threads();
  const int64_t grain = chunk_rows(v.c);
  const int64_t chunks = (v.rows + grain - 1) / grain;
  std::vector<std::vector<float>> part(workers,
                                       std::vector<float>(std::max(width, scratch)));
  std::vector<std::vector<double>> total(workers, std::vector<double>(v.n * width, 0.0));
  pool.parallel_for(v.n * chunks, 1, [&](int64_t lo, int64_t hi, int w) {
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t smp = i / chunks, r0 = (i % chunks) * grain;
      chunk(smp, smp * v.rows + r0, static_cast<int>(std::min(grain, v.rows - r0)),
            part[w].data(), total[w].data() + smp * width);
    }
  });
  out.assign(v.n * width, 0.0);
  for (const auto& t : total) {
    for (size_t j = 0; j < out.size(); ++j) {
      out[j] += t[j];
    }
  }
}

// One sample's column reductions on the calling thread (the same chunks).
template <class Chunk>
void sample_reduce(const Rows& v, int64_t smp, int width, Chunk chunk, float* part,
                   double* out) {
  std::fill(out, out + width, 0.0);
  for (int64_t r0 = 0; r0 < v.rows; r0 += chunk_rows(v.c)) {
    chunk(smp, smp * v.rows + r0, static_cast<int>(std::min(chunk_rows(v.c), v.rows - r0)),
          part, out);
  }
}

// Rows per moments block: about 4K floats (16 KB: its second read comes from L1).
int64_t block_rows(int c) {
  return std::max<int64_t>(1, 4096 / std::max(1, c));
}

// Adds `rows` rows of c channels into s1 (sum x) and s2 (sum x^2), in double, from one read
// of x: per L1 block, its mean, corrected by the residual sum (the exact block sum is
// rows * mean + res) and its centred squares (sq - res^2 / rows about that sum). The float
// work never squares a value that is not centred; the variance s2 / n - (s1 / n)^2, in
// double, keeps 1e-10 of it for data whose mean is 1000 standard deviations (scratch: 3c).
void add_moments(const float* x, int64_t rows, int c, float* scratch, double* s1, double* s2) {
  float* mean = scratch;
  float* res = scratch + c;
  float* sq = scratch + 2 * c;
  const int64_t br = block_rows(c);
  for (int64_t r0 = 0; r0 < rows; r0 += br) {
    const int n = static_cast<int>(std::min(br, rows - r0));
    kernels::column_moments(x + r0 * c, n, c, mean, res, sq);
    for (int j = 0; j < c; ++j) {
      const double sum = static_cast<double>(mean[j]) * n + res[j];
      s1[j] += sum;
      s2[j] += (static_cast<double>(sq[j]) - static_cast<double>(res[j]) * res[j] / n) +
               sum * sum / n;
    }
  }
}

// pass(sample, first_row, count) over rows [lo, hi), never across two samples, in pieces
// of at most `grain` rows.
template <class Pass>
void rows_of(const Rows& v, int64_t lo, int64_t hi, int64_t grain, Pass& pass) {
  while (lo < hi) {
    const int64_t smp = lo / v.rows;
    const int64_t end = std::min({hi, (smp + 1) * v.rows, lo + grain});
    pass(smp, lo, static_cast<int>(end - lo));
    lo = end;
  }
}

// pass over every row on the whole pool.
template <class Pass>
void each_rows(const Rows& v, Pass pass) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max(1, v.c));
  ThreadPool::instance().parallel_for(v.n * v.rows, grain, [&](int64_t lo, int64_t hi, int) {
    rows_of(v, lo, hi, grain, pass);
  });
}

// Whole samples per task when there are enough of them to share the cores: each sample's
// passes then read it from this core's cache after the first (group norm: a sample of
// 64x64x64 is 1 MB), instead of every pass streaming the whole input from memory.
bool by_sample(const Rows& v) {
  return v.n >= 2 * ThreadPool::instance().threads();
}

// The per-sample arithmetic, shared by both ways of splitting the work. `count` values per
// (sample, group): rows * k.
struct Stats {
  const float* g;
  const float* b;
  float eps;
  int c, k;
  double count;

  int groups() const { return c / k; }

  // Each channel's group mean.
  void shifts(const float* mean, float* shift) const {
    for (int j = 0; j < c; ++j) {
      shift[j] = mean[j / k];
    }
  }

  // Group means and variances from one sample's channel moments (s1 = sum x, s2 = sum x^2,
  // in double); y = x * a + sh.
  void from_moments(const double* s1, const double* s2, float* mean, float* var, float* a,
                    float* sh) const {
    for (int gi = 0; gi < groups(); ++gi) {
      double t1 = 0.0, t2 = 0.0;
      for (int j = gi * k; j < (gi + 1) * k; ++j) {
        t1 += s1[j];
        t2 += s2[j];
      }
      const double m = t1 / count;
      mean[gi] = static_cast<float>(m);
      var[gi] = static_cast<float>(std::max(0.0, t2 / count - m * m));
    }
    for (int j = 0; j < c; ++j) {
      a[j] = g[j] / std::sqrt(var[j / k] + eps);
      sh[j] = b[j] - mean[j / k] * a[j];
    }
  }

  // dx = r (dxh - SA / M - xc r^2 SB / M) with dxh = dy g, SA = sum dxh, SB = sum dxh xc
  // over a group (M values): dx = dy * a + x * p + q per channel, from one sample's sums
  // s1 = sum dy, s2 = sum dy (x - mean); its dgamma, dbeta terms added into dgd, dbd.
  void grads(const double* s1, const double* s2, const float* mean, const float* var,
             float* a, float* p, float* q, double* dgd, double* dbd) const {
    for (int gi = 0; gi < groups(); ++gi) {
      const double r = 1.0 / std::sqrt(static_cast<double>(var[gi]) + eps);
      double sa = 0.0, sb = 0.0;
      for (int j = gi * k; j < (gi + 1) * k; ++j) {
        sa += g[j] * s1[j];
        sb += g[j] * s2[j];
        dgd[j] += s2[j] * r;
        dbd[j] += s1[j];
      }
      const double pj = -r * r * r * sb / count;
      const double qj = -r * sa / count - mean[gi] * pj;
      for (int j = gi * k; j < (gi + 1) * k; ++j) {
        a[j] = static_cast<float>(g[j] * r);
        p[j] = static_cast<float>(pj);
        q[j] = static_cast<float>(qj);
      }
    }
  }
};

// The statistics in one read of x (add_moments), then y in a second pass.
void forward(const float* x, const Stats& st, float* y, float* mean, float* var,
             const Rows& v) {
  const int c = v.c, groups = st.groups();
  std::vector<float> a(v.n * c), sh(v.n * c);
  auto moments = [&](int64_t, int64_t row, int n, float* part, double* out) {
    add_moments(x + row * c, n, c, part, out, out + c);
  };
  auto apply = [&](int64_t smp, int64_t row, int n) {
    kernels::scale_shift(x + row * c, a.data() + smp * c, sh.data() + smp * c, y + row * c, n,
                         c);
  };
  auto coefficients = [&](int64_t smp, const double* s) {
    st.from_moments(s, s + c, mean + smp * groups, var + smp * groups, a.data() + smp * c,
                    sh.data() + smp * c);
  };
  if (by_sample(v)) {
    auto& pool = ThreadPool::instance();
    std::vector<std::vector<float>> part(pool.threads(), std::vector<float>(3 * c));
    std::vector<std::vector<double>> tot(pool.threads(), std::vector<double>(2 * c));
    pool.parallel_for(v.n, 1, [&](int64_t lo, int64_t hi, int w) {
      for (int64_t smp = lo; smp < hi; ++smp) {
        sample_reduce(v, smp, 2 * c, moments, part[w].data(), tot[w].data());
        coefficients(smp, tot[w].data());
        rows_of(v, smp * v.rows, (smp + 1) * v.rows, chunk_rows(c), apply);
      }
    });
    return;
  }
  std::vector<double> s;
  column_reduce(v, 2 * c, moments, s, 3 * c);
  for (int64_t smp = 0; smp < v.n; ++smp) {
    coefficients(smp, s.data() + smp * 2 * c);
  }
  each_rows(v, apply);
}

// The sums of dy and dy * (x - mean) per sample in one pass, dx in a second.
void backward(const float* x, const float* mean, const float* var, const float* dy,
              const Stats& st, float* dx, float* dg, float* db, const Rows& v) {
  const int c = v.c, groups = st.groups();
  std::vector<float> shift(v.n * c), a(v.n * c), p(v.n * c), q(v.n * c);
  for (int64_t smp = 0; smp < v.n; ++smp) {
    st.shifts(mean + smp * groups, shift.data() + smp * c);
  }
  auto sums = [&](int64_t smp, int64_t row, int n, float* acc) {
    kernels::column_grad_sums(x + row * c, dy + row * c, shift.data() + smp * c, acc, n, c);
  };
  auto apply = [&](int64_t smp, int64_t row, int n) {
    const int64_t o = smp * c;
    kernels::scale_shift2(x + row * c, dy + row * c, a.data() + o, p.data() + o, q.data() + o,
                          dx + row * c, n, c);
  };
  auto coefficients = [&](int64_t smp, const double* s, double* dgd, double* dbd) {
    const int64_t o = smp * c;
    st.grads(s, s + c, mean + smp * groups, var + smp * groups, a.data() + o, p.data() + o,
             q.data() + o, dgd, dbd);
  };
  auto& pool = ThreadPool::instance();
  // Per worker (one, unless by sample): the dgamma and dbeta totals, in double.
  std::vector<std::vector<double>> dgd(pool.threads(), std::vector<double>(c, 0.0));
  std::vector<std::vector<double>> dbd(pool.threads(), std::vector<double>(c, 0.0));
  if (by_sample(v)) {
    std::vector<std::vector<float>> part(pool.threads(), std::vector<float>(2 * c));
    std::vector<std::vector<double>> tot(pool.threads(), std::vector<double>(2 * c));
    pool.parallel_for(v.n, 1, [&](int64_t lo, int64_t hi, int w) {
      for (int64_t smp = lo; smp < hi; ++smp) {
        sample_reduce(v, smp, 2 * c, summed(sums, 2 * c), part[w].data(), tot[w].data());
        coefficients(smp, tot[w].data(), dgd[w].data(), dbd[w].data());
        rows_of(v, smp * v.rows, (smp + 1) * v.rows, chunk_rows(c), apply);
      }
    });
  } else {
    std::vector<double> s;
    column_reduce(v, 2 * c, summed(sums, 2 * c), s);
    for (int64_t smp = 0; smp < v.n; ++smp) {
      coefficients(smp, s.data() + smp * 2 * c, dgd[0].data(), dbd[0].data());
    }
    each_rows(v, apply);
  }
  for (int j = 0; j < c; ++j) {
    double tg = 0.0, tb = 0.0;
    for (size_t w = 0; w < dgd.size(); ++w) {
      tg += dgd[w][j];
      tb += dbd[w][j];
    }
    dg[j] = static_cast<float>(tg);
    db[j] = static_cast<float>(tb);
  }
}

Arrays make(float eps, bool per_sample, int k, bool backward, Arrays ins, mx::Stream s) {
  for (auto& a : ins) {
    a = mx::contiguous(a, false, s);
  }
  auto prim = std::make_shared<ChannelNorm>(s, eps, per_sample, k, backward);
  auto shapes = prim->output_shapes(ins);
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  return mx::array::make_arrays(std::move(shapes), dtypes, prim, ins);
}

Arrays pick(const Arrays& all, const std::vector<int>& argnums) {
  Arrays out;
  for (int arg : argnums) {
    out.push_back(all[arg]);
  }
  return out;
}

}  // namespace

const char* ChannelNorm::name() const {
  if (per_sample_) {
    return backward_ ? "MlxnoteGroupNormGrad" : "MlxnoteGroupNorm";
  }
  return backward_ ? "MlxnoteBatchNormGrad" : "MlxnoteBatchNorm";
}

void ChannelNorm::eval_cpu(const std::vector<mx::array>& inputs,
                           std::vector<mx::array>& outputs) {
  auto& encoder = mx::cpu::get_command_encoder(stream());
  std::vector<const float*> in;
  for (const auto& a : inputs) {
    if (a.dtype() != mx::float32 || !a.flags().row_contiguous) {
      fail(name(), "inputs must be row-contiguous float32 arrays");
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
  const auto& x = inputs[0];
  const int c = x.shape(-1);
  const int64_t n = per_sample_ ? x.shape(0) : 1;
  const Rows v{n, static_cast<int64_t>(x.size() / c) / n, c};
  encoder.dispatch([eps = eps_, k = k_, bwd = backward_, in = std::move(in),
                    out = std::move(out), v]() {
    const double count = static_cast<double>(v.rows) * k;
    if (bwd) {
      backward(in[0], in[2], in[3], in[4], Stats{in[1], nullptr, eps, v.c, k, count}, out[0],
               out[1], out[2], v);
    } else {
      forward(in[0], Stats{in[1], in[2], eps, v.c, k, count}, out[0], out[1], out[2], v);
    }
  });
}

void ChannelNorm::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  fail(name(), "CPU only");
}

std::vector<mx::Shape> ChannelNorm::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& x = inputs[0];
  if (backward_) {
    const mx::Shape ch{x.shape(-1)};
    return {x.shape(), ch, ch};
  }
  const auto stats = Form{eps_, per_sample_, k_, 0}.stat_shape(x);
  return {x.shape(), stats, stats};
}

std::vector<mx::array> ChannelNorm::vjp(const std::vector<mx::array>& primals,
                                        const std::vector<mx::array>& cotangents,
                                        const std::vector<int>& argnums,
                                        const std::vector<mx::array>& outputs) {
  auto s = stream();
  if (!backward_) {
    // The statistics are for the moving averages (used under stop_gradient) or internal:
    // their cotangents are not propagated.
    return pick(make(eps_, per_sample_, k_, true,
                     {primals[0], primals[1], outputs[1], outputs[2], cotangents[0]}, s),
                argnums);
  }
  // The backward's own gradient: its MLX-op form of (x, g, dy), the statistics recomputed
  // from x (so the mean/var inputs get none).
  const Form form{eps_, per_sample_, k_, 0};
  auto grads = mx::vjp([form, s](const Arrays& a) { return form.backward(a, s); },
                       {primals[0], primals[1], primals[4]}, cotangents).second;
  Arrays all{grads[0], grads[1], mx::zeros_like(primals[2], s), mx::zeros_like(primals[3], s),
             grads[2]};
  return pick(all, argnums);
}

std::vector<mx::array> ChannelNorm::jvp(const std::vector<mx::array>& primals,
                                        const std::vector<mx::array>& tangents,
                                        const std::vector<int>& argnums) {
  auto s = stream();
  const Arrays t = full_tangents(primals, tangents, argnums, s);
  const Form form{eps_, per_sample_, k_, 0};
  if (!backward_) {
    return mx::jvp([form, s](const Arrays& a) { return form.forward(a, s); }, primals, t)
        .second;
  }
  return mx::jvp([form, s](const Arrays& a) { return form.backward(a, s); },
                 {primals[0], primals[1], primals[4]}, {t[0], t[1], t[4]})
      .second;
}

std::pair<std::vector<mx::array>, std::vector<int>> ChannelNorm::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  // Per mapped entry its own statistics: the MLX-op form, the mapped axis first and kept
  // as a sample axis.
  auto s = stream();
  auto ins = mapped_first(inputs, axes, s);
  const Form form{eps_, per_sample_, k_, 1};
  auto out = backward_ ? form.backward({ins[0], ins[1], ins[4]}, s)
                       : form.forward({ins[0], ins[1], ins[2]}, s);
  return {out, {0, 0, 0}};
}

bool ChannelNorm::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const ChannelNorm*>(&other);
  return o != nullptr && o->eps_ == eps_ && o->per_sample_ == per_sample_ && o->k_ == k_ &&
         o->backward_ == backward_;
}

namespace {

void check_args(const char* who, const mx::array& x, const mx::array& g, const mx::array& b) {
  if (x.ndim() < 2 || x.shape(-1) < 1 || x.size() / x.shape(-1) < 1) {
    fail(who, "x (..., C) with at least one row and one channel");
  }
  const int c = x.shape(-1);
  if (g.ndim() != 1 || b.ndim() != 1 || g.shape(0) != c || b.shape(0) != c) {
    fail(who, "gamma and beta of shape (C,)");
  }
  for (const auto& a : {x, g, b}) {
    if (a.dtype() != mx::float32) {
      fail(who, "float32 inputs only");
    }
  }
}

}  // namespace

std::vector<mx::array> batch_norm_train(const mx::array& x, const mx::array& g,
                                        const mx::array& b, float eps, mx::StreamOrDevice s) {
  check_args("batch_norm_train", x, g, b);
  return make(eps, false, 1, false, {x, g, b}, mx::to_stream(s));
}

std::vector<mx::array> group_norm(const mx::array& x, const mx::array& g, const mx::array& b,
                                  int groups, float eps, mx::StreamOrDevice s) {
  check_args("group_norm", x, g, b);
  if (groups < 1 || x.shape(-1) % groups) {
    fail("group_norm", "groups must divide the " + std::to_string(x.shape(-1)) +
                           " channels, got " + std::to_string(groups));
  }
  return make(eps, true, x.shape(-1) / groups, false, {x, g, b}, mx::to_stream(s));
}

}  // namespace mlxnote
