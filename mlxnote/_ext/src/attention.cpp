#include "attention.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/transforms.h"

#include "blas.h"
#include "mask_rows.h"
#include "pool.h"
#include "softmax_kernels.h"

namespace mlxnote {

namespace {

using Arrays = std::vector<mx::array>;

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("mlxnote attention: " + what);
}

// Logits per thread buffer (floats): a head's queries are taken in blocks of at most this
// many logits, so a block's logits (and, backward, their gradient) stay in the core's cache.
constexpr int64_t kBlock = 32768;

// A [B, H, T, D] operand by head: head bh's T x D matrix starts at at(bh), rows ld apart.
struct Heads {
  const float* base = nullptr;
  int64_t sb = 0, sh = 0, ld = 0;
  int h = 1;
  const float* at(int64_t bh) const {
    return base + (bh / h) * sb + (bh % h) * sh;
  }
};

// `a` read in place where a head is a matrix with contiguous rows, else a row-contiguous
// copy of it in `own`.
Heads heads(const mx::array& a, std::vector<float>& own) {
  const auto& st = a.strides();
  const int t = a.shape(2), d = a.shape(3);
  Heads hd;
  hd.h = a.shape(1);
  if ((st[3] == 1 || d == 1) && (st[2] >= d || t == 1) && st[0] >= 0 && st[1] >= 0) {
    hd.base = a.data<float>();
    hd.sb = st[0];
    hd.sh = st[1];
    hd.ld = t == 1 ? d : st[2];
    return hd;
  }
  own.resize(a.size());
  const float* src = a.data<float>();
  float* dst = own.data();
  for (int i0 = 0; i0 < a.shape(0); ++i0) {
    for (int i1 = 0; i1 < a.shape(1); ++i1) {
      for (int i2 = 0; i2 < t; ++i2) {
        const float* row = src + i0 * st[0] + i1 * st[1] + i2 * st[2];
        for (int i3 = 0; i3 < d; ++i3) {
          *dst++ = row[i3 * st[3]];
        }
      }
    }
  }
  hd.base = own.data();
  hd.sh = int64_t(t) * d;
  hd.sb = hd.sh * hd.h;
  hd.ld = d;
  return hd;
}

// C = alpha op(A) op(B) + beta C on this thread alone, or threaded by the BLAS.
struct Gemm {
  bool serial;
  void operator()(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc) const {
    (serial ? blas::sgemm_serial : blas::sgemm)(ta, tb, m, n, k, alpha, a, int(lda), b,
                                                 int(ldb), beta, c, int(ldc));
  }
};

// Runs fn over [0, n) on the pool when the GEMMs can run side by side, else here.
void for_each(int64_t n, const Gemm& gemm, const RangeFn& fn) {
  if (gemm.serial && ThreadPool::instance().threads() > 1) {
    ThreadPool::instance().parallel_for(n, 1, fn);
  } else {
    fn(0, n, 0);
  }
}

std::vector<float>& scratch(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) {
    buf.resize(n);
  }
  return buf;
}

struct Sizes {
  int64_t bh;
  int tq, tk, d, dv, bq, blocks;
};

Sizes sizes(const mx::array& q, const mx::array& k, const mx::array& v) {
  Sizes z;
  z.bh = int64_t(q.shape(0)) * q.shape(1);
  z.tq = q.shape(2);
  z.tk = k.shape(2);
  z.d = q.shape(3);
  z.dv = v.shape(3);
  z.bq = static_cast<int>(std::clamp<int64_t>(kBlock / std::max(1, z.tk), 1, z.tq));
  z.blocks = (z.tq + z.bq - 1) / z.bq;
  return z;
}

void allocate(std::vector<mx::array>& outputs) {
  for (auto& o : outputs) {
    o.set_data(mx::allocator::malloc(o.nbytes()));
  }
}

// MLX-op forms (the transforms of the transforms, and empty shapes): in = q, k, v [, mask].
Arrays plain_forward(const AttentionParams& p, const Arrays& in, mx::Stream s) {
  auto logits = mx::multiply(mx::matmul(in[0], mx::swapaxes(in[1], -1, -2, s), s),
                             mx::array(p.scale), s);
  std::optional<mx::array> mask;
  if (in.size() > 3) {
    mask = in[3];
  }
  auto w = masked_softmax(logits, mask, p.softmax.causal, s);
  return {mx::matmul(w, in[2], s)};
}

// in = q, k, v [, mask], dout -> dq, dk, dv [, dmask].
Arrays plain_backward(const AttentionParams& p, const Arrays& in, mx::Stream s) {
  Arrays primals(in.begin(), in.end() - 1);
  return mx::vjp([p, s](const Arrays& a) { return plain_forward(p, a, s); }, primals,
                 {in.back()})
      .second;
}

bool has_mask(const AttentionParams& p) {
  return p.softmax.mask != MaskKind::None;
}

Arrays make(const AttentionParams& p, bool backward, Arrays ins, mx::Stream s) {
  const auto& q = ins[0];
  const auto& k = ins[1];
  const auto& v = ins[2];
  std::vector<mx::Shape> shapes;
  if (backward) {
    shapes = {q.shape(), k.shape(), v.shape()};
  } else {
    shapes = {{q.shape(0), q.shape(1), q.shape(2), v.shape(3)},
              {q.shape(0), q.shape(1), q.shape(2), 2}};
  }
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  auto prim = std::make_shared<Attention>(s, p, backward);
  return mx::array::make_arrays(std::move(shapes), dtypes, std::move(prim), std::move(ins));
}

}  // namespace

void Attention::eval_cpu(const std::vector<mx::array>& inputs,
                         std::vector<mx::array>& outputs) {
  for (const auto& a : inputs) {
    if (a.dtype() != mx::float32 && a.dtype() != mx::bool_) {
      fail("float32 operands only");
    }
  }
  allocate(outputs);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  for (const auto& a : inputs) {
    encoder.set_input_array(a);
  }
  for (auto& o : outputs) {
    encoder.set_output_array(o);
  }
  const int nm = has_mask(p_) ? 1 : 0;
  const mx::array* mask = nm ? &inputs[3] : nullptr;
  const Sizes z = sizes(inputs[0], inputs[1], inputs[2]);
  const mx::Shape logits{inputs[0].shape(0), inputs[0].shape(1), z.tq, z.tk};
  const float scale = p_.scale;
  if (!backward_) {
    encoder.dispatch([q = inputs[0], k = inputs[1], v = inputs[2], z, scale,
                      mr = mask_rows(p_.softmax, logits, mask),
                      out = outputs[0].data<float>(), stats = outputs[1].data<float>()]() {
      std::vector<float> oq, ok, ov;
      const Heads Q = heads(q, oq), K = heads(k, ok), V = heads(v, ov);
      const Gemm gemm{blas::serial_available()};
      for_each(z.bh * z.blocks, gemm, [&](int64_t lo, int64_t hi, int) {
        float* s = scratch(size_t(z.bq) * z.tk).data();
        for (int64_t it = lo; it < hi; ++it) {
          const int64_t bh = it / z.blocks;
          const int i0 = static_cast<int>(it % z.blocks) * z.bq;
          const int m = std::min(z.bq, z.tq - i0);
          const int64_t r0 = bh * z.tq + i0;
          gemm(false, true, m, z.tk, z.d, scale, Q.at(bh) + i0 * Q.ld, Q.ld, K.at(bh), K.ld,
               0.0f, s, z.tk);
          for (int i = 0; i < m; ++i) {
            kernels::softmax_exp_row(s + int64_t(i) * z.tk, z.tk, mr.row(r0 + i),
                                     stats + (r0 + i) * 2);
          }
          // exp(logits) @ v, each row then divided by its sum (a Dv-wide row, not a Tk one).
          float* o = out + r0 * z.dv;
          gemm(false, false, m, z.dv, z.tk, 1.0f, s, z.tk, V.at(bh), V.ld, 0.0f, o, z.dv);
          for (int i = 0; i < m; ++i) {
            const float inv = stats[(r0 + i) * 2 + 1];
            for (int j = 0; j < z.dv; ++j) {
              o[int64_t(i) * z.dv + j] *= inv;
            }
          }
        }
      });
    });
    return;
  }
  encoder.dispatch([q = inputs[0], k = inputs[1], v = inputs[2], z, scale,
                    mr = mask_rows(p_.softmax, logits, mask), st = inputs[3 + nm],
                    g = inputs[4 + nm], dq = outputs[0].data<float>(),
                    dk = outputs[1].data<float>(), dv = outputs[2].data<float>()]() {
    std::vector<float> oq, ok, ov, og;
    const Heads Q = heads(q, oq), K = heads(k, ok), V = heads(v, ov), G = heads(g, og);
    const float* stats = st.data<float>();
    const Gemm gemm{blas::serial_available()};
    // One head per task: its dk, dv add up over its query blocks.
    for_each(z.bh, gemm, [&](int64_t lo, int64_t hi, int) {
      float* p = scratch(2 * size_t(z.bq) * z.tk).data();
      float* dp = p + size_t(z.bq) * z.tk;
      for (int64_t bh = lo; bh < hi; ++bh) {
        float* dkh = dk + bh * z.tk * z.d;
        float* dvh = dv + bh * z.tk * z.dv;
        for (int b = 0; b < z.blocks; ++b) {
          const int i0 = b * z.bq;
          const int m = std::min(z.bq, z.tq - i0);
          const int64_t r0 = bh * z.tq + i0;
          const float* qb = Q.at(bh) + i0 * Q.ld;
          const float* gb = G.at(bh) + i0 * G.ld;
          const float beta = b ? 1.0f : 0.0f;
          gemm(false, true, m, z.tk, z.d, scale, qb, Q.ld, K.at(bh), K.ld, 0.0f, p, z.tk);
          for (int i = 0; i < m; ++i) {
            kernels::softmax_row_again(p + int64_t(i) * z.tk, z.tk, mr.row(r0 + i),
                                       stats + (r0 + i) * 2);
          }
          gemm(false, true, m, z.tk, z.dv, 1.0f, gb, G.ld, V.at(bh), V.ld, 0.0f, dp, z.tk);
          gemm(true, false, z.tk, z.dv, m, 1.0f, p, z.tk, gb, G.ld, beta, dvh, z.dv);
          for (int i = 0; i < m; ++i) {  // dp becomes the logits' gradient
            const int64_t o = int64_t(i) * z.tk;
            kernels::softmax_grad_row(p + o, dp + o, dp + o, z.tk, mr.row(r0 + i));
            kernels::center_grad_row(p + o, dp + o, z.tk);
          }
          gemm(false, false, m, z.d, z.tk, scale, dp, z.tk, K.at(bh), K.ld, 0.0f,
               dq + r0 * z.d, z.d);
          gemm(true, false, z.tk, z.d, m, scale, dp, z.tk, qb, Q.ld, beta, dkh, z.d);
        }
      }
    });
  });
}

void Attention::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error("mlxnote attention: CPU only (GPUs use mx.fast attention)");
}

std::vector<mx::Shape> Attention::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& q = inputs[0];
  if (backward_) {
    return {q.shape(), inputs[1].shape(), inputs[2].shape()};
  }
  return {{q.shape(0), q.shape(1), q.shape(2), inputs[2].shape(3)},
          {q.shape(0), q.shape(1), q.shape(2), 2}};
}

std::vector<mx::array> Attention::vjp(const std::vector<mx::array>& primals,
                                      const std::vector<mx::array>& cotangents,
                                      const std::vector<int>& argnums,
                                      const std::vector<mx::array>& outputs) {
  auto s = stream();
  const int nm = has_mask(p_) ? 1 : 0;
  Arrays res;
  if (!backward_) {
    // q, k, v [, mask]: the backward primitive gives dq, dk, dv; the statistics are internal
    // outputs. An additive mask's gradient (the logits') comes from the MLX-op form.
    Arrays ins(primals.begin(), primals.end());
    ins.push_back(outputs[1]);
    ins.push_back(cotangents[0]);
    auto grads = make(p_, true, ins, s);
    for (int arg : argnums) {
      if (arg < 3) {
        res.push_back(grads[arg]);
      } else if (p_.softmax.mask == MaskKind::Additive) {
        Arrays args(primals.begin(), primals.end());
        args.push_back(cotangents[0]);
        res.push_back(plain_backward(p_, args, s)[3]);
      } else {
        res.push_back(mx::zeros_like(primals[arg], s));
      }
    }
    return res;
  }
  // The backward's own gradient: the MLX-op form of (q, k, v [, mask], dout) -> (dq, dk, dv),
  // the weights recomputed (the statistics get none).
  Arrays args(primals.begin(), primals.begin() + 3 + nm);
  args.push_back(primals.back());
  auto p = p_;
  auto grads = mx::vjp(
                   [p, s](const Arrays& a) {
                     auto g = plain_backward(p, a, s);
                     return Arrays(g.begin(), g.begin() + 3);
                   },
                   args, Arrays(cotangents.begin(), cotangents.begin() + 3))
                   .second;
  const int stats_at = 3 + nm;
  for (int arg : argnums) {
    if (arg == stats_at) {
      res.push_back(mx::zeros_like(primals[arg], s));
    } else {
      res.push_back(grads[arg < stats_at ? arg : arg - 1]);
    }
  }
  return res;
}

std::vector<mx::array> Attention::jvp(const std::vector<mx::array>& primals,
                                      const std::vector<mx::array>& tangents,
                                      const std::vector<int>& argnums) {
  auto s = stream();
  const int nm = has_mask(p_) ? 1 : 0;
  const int n = 3 + nm;  // q, k, v [, mask]
  const Arrays t = full_tangents(primals, tangents, argnums, s);
  auto p = p_;
  Arrays args(primals.begin(), primals.begin() + n), targs(t.begin(), t.begin() + n);
  if (!backward_) {
    auto out = mx::jvp([p, s](const Arrays& a) { return plain_forward(p, a, s); }, args, targs)
                   .second[0];
    // The statistics' tangents are not needed by anything that reads out.
    return {out, mx::zeros(output_shapes(primals)[1], mx::float32, s)};
  }
  args.push_back(primals.back());
  targs.push_back(t.back());
  auto d = mx::jvp(
               [p, s](const Arrays& a) {
                 auto g = plain_backward(p, a, s);
                 return Arrays(g.begin(), g.begin() + 3);
               },
               args, targs)
               .second;
  return d;
}

std::pair<std::vector<mx::array>, std::vector<int>> Attention::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  // The mapped axis to the front, merged into the batch axis, and split off again.
  auto s = stream();
  auto ins = mapped_first(inputs, axes, s);
  const int size = ins[0].shape(0);
  for (auto& a : ins) {
    std::vector<int> shape(a.shape().begin() + 1, a.shape().end());
    shape[0] *= size;
    a = mx::reshape(a, mx::Shape(shape.begin(), shape.end()), s);
  }
  auto outs = make(p_, backward_, ins, s);
  std::vector<int> out_axes;
  for (auto& o : outs) {
    std::vector<int> shape{size};
    shape.insert(shape.end(), o.shape().begin(), o.shape().end());
    shape[1] /= size;
    o = mx::reshape(o, mx::Shape(shape.begin(), shape.end()), s);
    out_axes.push_back(0);
  }
  return {outs, out_axes};
}

bool Attention::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const Attention*>(&other);
  return o != nullptr && o->backward_ == backward_ && o->p_ == p_;
}

std::vector<mx::array> fused_attention(const mx::array& q, const mx::array& k,
                                       const mx::array& v, float scale,
                                       const std::optional<mx::array>& mask, bool causal,
                                       mx::StreamOrDevice sd) {
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4) {
    fail("q, k, v must be rank 4 [B, H, T, D]");
  }
  if (q.dtype() != mx::float32 || k.dtype() != mx::float32 || v.dtype() != mx::float32) {
    fail("float32 q, k, v only");
  }
  for (int d = 0; d < 2; ++d) {
    if (k.shape(d) != q.shape(d) || v.shape(d) != q.shape(d)) {
      fail("q, k, v need one batch and head count");
    }
  }
  if (k.shape(3) != q.shape(3) || v.shape(2) != k.shape(2)) {
    fail("k needs q's depth and v k's length");
  }
  auto s = mx::to_stream(sd);
  AttentionParams p;
  p.scale = scale;
  p.softmax.causal = causal;
  Arrays ins{q, k, v};
  if (mask) {
    if (mask->dtype() == mx::bool_) {
      p.softmax.mask = MaskKind::Bool;
    } else if (mask->dtype() == mx::float32) {
      p.softmax.mask = MaskKind::Additive;
    } else {
      fail("a boolean or float32 mask");
    }
    ins.push_back(mx::broadcast_to(*mask, {q.shape(0), q.shape(1), q.shape(2), k.shape(2)}, s));
  }
  if (q.size() == 0 || k.size() == 0 || v.size() == 0) {  // the MLX-op form
    auto out = plain_forward(p, ins, s)[0];
    return {out, mx::zeros({q.shape(0), q.shape(1), q.shape(2), 2}, mx::float32, s)};
  }
  return make(p, false, std::move(ins), s);
}

}  // namespace mlxnote
