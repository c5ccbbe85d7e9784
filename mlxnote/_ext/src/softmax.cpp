#include "softmax.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"

#include "mask_rows.h"
#include "pool.h"
#include "softmax_kernels.h"

namespace mlxnote {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("mlxnote masked_softmax: " + what);
}

void check(const mx::array& a, const char* what) {
  if (a.dtype() != mx::float32 || !a.flags().row_contiguous) {
    fail(std::string(what) + " must be a row-contiguous float32 array");
  }
}

}  // namespace

void Softmax::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const bool fwd = kind_ == SoftmaxKind::Forward;
  const int nin = fwd ? 1 : 2;
  check(inputs[0], fwd ? "x" : "y");
  if (!fwd) {
    check(inputs[1], "the cotangent");
  }
  const mx::array* mask = p_.mask == MaskKind::None ? nullptr : &inputs[nin];
  out.set_data(mx::allocator::malloc(out.nbytes()));
  auto& encoder = mx::cpu::get_command_encoder(stream());
  for (const auto& a : inputs) {
    encoder.set_input_array(a);
  }
  encoder.set_output_array(out);
  const int n = out.shape(-1);
  const int64_t rows = n ? static_cast<int64_t>(out.size() / n) : 0;
  encoder.dispatch([a = inputs[0].data<float>(), g = fwd ? nullptr : inputs[1].data<float>(),
                    o = out.data<float>(), mr = mask_rows(p_, inputs[0].shape(), mask), fwd, n,
                    rows]() {
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max(1, n));
    ThreadPool::instance().parallel_for(rows, grain, [&](int64_t lo, int64_t hi, int) {
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t off = r * n;
        if (fwd) {
          kernels::softmax_row(a + off, o + off, n, mr.row(r));
        } else {
          // centred as in the fused attention: a row of the logits' gradient sums to 0, and
          // its rounding along that direction is what a bias added to every logit of the
          // row (a key's bias in attention, exactly 0 in theory) would receive as gradient
          kernels::softmax_grad_row(a + off, g + off, o + off, n, mr.row(r));
          kernels::center_grad_row(a + off, o + off, n);
        }
      }
    });
  });
}

void Softmax::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::runtime_error("mlxnote masked_softmax: CPU only (GPUs use MLX's softmax)");
}

std::vector<mx::Shape> Softmax::output_shapes(const std::vector<mx::array>& inputs) {
  return {inputs[0].shape()};
}

namespace {

mx::array make(SoftmaxKind kind, SoftmaxParams p, std::vector<mx::array> ins, mx::Stream s) {
  const size_t dense = kind == SoftmaxKind::Forward ? 1 : 2;
  for (size_t i = 0; i < ins.size(); ++i) {
    if (i < dense) {
      ins[i] = mx::contiguous(ins[i], false, s);
    } else if (ins[i].strides().back() != 0 && ins[i].strides().back() != 1) {
      ins[i] = mx::contiguous(ins[i], false, s);  // the kernels step along rows of 0 or 1
    }
  }
  auto prim = std::make_shared<Softmax>(s, p, kind);
  auto shape = ins[0].shape();
  return mx::array(std::move(shape), mx::float32, std::move(prim), std::move(ins));
}

std::vector<mx::array> with_mask(std::vector<mx::array> ins, const std::vector<mx::array>& all,
                                 size_t at) {
  if (all.size() > at) {
    ins.push_back(all[at]);
  }
  return ins;
}

}  // namespace

namespace {

// The entries that get a gradient (boolean mask and causal), as MLX ops; none: all.
std::optional<mx::array> kept(const SoftmaxParams& p, const std::vector<mx::array>& ins,
                              size_t mask_at, mx::Stream s) {
  std::optional<mx::array> keep;
  if (p.mask == MaskKind::Bool) {
    keep = ins[mask_at];
  }
  if (p.causal) {
    const auto& x = ins[0];
    const int tq = x.shape(-2), tk = x.shape(-1);
    auto tri = mx::greater_equal(mx::reshape(mx::arange(tq, s), {tq, 1}, s),
                                 mx::reshape(mx::arange(tk, s), {1, tk}, s), s);
    keep = keep ? mx::logical_and(*keep, tri, s) : tri;
  }
  return keep;
}

mx::array row_sum(const mx::array& a, mx::Stream s) {
  return mx::sum(a, -1, true, s);
}

}  // namespace

std::vector<mx::array> Softmax::vjp(const std::vector<mx::array>& primals,
                                    const std::vector<mx::array>& cotangents,
                                    const std::vector<int>& argnums,
                                    const std::vector<mx::array>& outputs) {
  auto s = stream();
  const auto& c = cotangents[0];
  std::vector<mx::array> res;
  if (kind_ == SoftmaxKind::Forward) {
    // dx = keep * y * (c - sum(c * y)); an additive mask gets the same gradient, a boolean
    // one none.
    auto dx = make(SoftmaxKind::Backward, p_, with_mask({outputs[0], c}, primals, 1), s);
    for (int arg : argnums) {
      res.push_back(arg == 0 || p_.mask == MaskKind::Additive ? dx
                                                               : mx::zeros_like(primals[1], s));
    }
    return res;
  }
  // dx = keep * y * (g - sum(g * y)); with c' = keep * c:
  //   d/dg = y * (c' - sum(c' * y)),  d/dy = c' * (g - sum(g * y)) - g * sum(c' * y).
  const auto& y = primals[0];
  const auto& g = primals[1];
  auto keep = kept(p_, primals, 2, s);
  auto cm = keep ? mx::where(*keep, c, mx::zeros_like(c, s), s) : c;
  auto cy = row_sum(mx::multiply(cm, y, s), s);
  for (int arg : argnums) {
    if (arg == 0) {
      auto gy = row_sum(mx::multiply(g, y, s), s);
      res.push_back(mx::subtract(mx::multiply(cm, mx::subtract(g, gy, s), s),
                                 mx::multiply(g, cy, s), s));
    } else if (arg == 1) {
      res.push_back(mx::multiply(y, mx::subtract(cm, cy, s), s));
    } else {
      res.push_back(mx::zeros_like(primals[2], s));
    }
  }
  return res;
}

std::vector<mx::array> Softmax::jvp(const std::vector<mx::array>& primals,
                                    const std::vector<mx::array>& tangents,
                                    const std::vector<int>& argnums) {
  auto s = stream();
  if (kind_ == SoftmaxKind::Backward) {
    // Linear in g; in y the product rule of the vjp's formula.
    const auto& y = primals[0];
    const auto& g = primals[1];
    auto keep = kept(p_, primals, 2, s);
    std::optional<mx::array> out;
    for (size_t i = 0; i < argnums.size(); ++i) {
      const auto& t = tangents[i];
      mx::array term = argnums[i] == 1
          ? make(SoftmaxKind::Backward, p_, with_mask({y, t}, primals, 2), s)
          : mx::zeros_like(y, s);
      if (argnums[i] == 0) {  // d/dy [y * (g - sum(g y))] . t
        auto d = mx::subtract(mx::multiply(t, mx::subtract(g, row_sum(mx::multiply(g, y, s), s),
                                                         s), s),
                              mx::multiply(y, row_sum(mx::multiply(g, t, s), s), s), s);
        term = keep ? mx::where(*keep, d, mx::zeros_like(d, s), s) : d;
      }
      out = out ? mx::add(*out, term, s) : term;
    }
    return {*out};
  }
  // dy = keep * y * (t - sum(t * y)) for the total tangent of the logits (x and an additive
  // mask enter the same way; a boolean mask has none).
  std::optional<mx::array> t;
  for (size_t i = 0; i < argnums.size(); ++i) {
    if (argnums[i] == 0 || p_.mask == MaskKind::Additive) {
      t = t ? mx::add(*t, tangents[i], s) : tangents[i];
    }
  }
  auto y = make(SoftmaxKind::Forward, p_, primals, s);
  if (!t) {
    return {mx::zeros_like(y, s)};
  }
  return {make(SoftmaxKind::Backward, p_, with_mask({y, *t}, primals, 1), s)};
}

std::pair<std::vector<mx::array>, std::vector<int>> Softmax::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  // The kernels work on rows: a mapped axis moved to the front is one more leading axis.
  auto s = stream();
  auto ins = mapped_first(inputs, axes, s);
  for (size_t i = 1; i < ins.size(); ++i) {  // one shape (the mask broadcast to it)
    ins[i] = mx::broadcast_to(ins[i], ins[0].shape(), s);
  }
  return {{make(kind_, p_, std::move(ins), s)}, {0}};
}

const char* Softmax::name() const {
  return kind_ == SoftmaxKind::Forward ? "MlxnoteMaskedSoftmax" : "MlxnoteMaskedSoftmaxGrad";
}

bool Softmax::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const Softmax*>(&other);
  return o != nullptr && o->kind_ == kind_ && o->p_ == p_;
}

mx::array masked_softmax(const mx::array& x, const std::optional<mx::array>& mask,
                         bool causal, mx::StreamOrDevice s) {
  if (x.dtype() != mx::float32) {
    fail("float32 logits only");
  }
  if (x.ndim() < 1 || (causal && x.ndim() < 2)) {
    fail(causal ? "causal needs logits of rank >= 2 (queries, keys)" : "logits of rank >= 1");
  }
  SoftmaxParams p;
  p.causal = causal;
  std::vector<mx::array> ins{x};
  if (mask) {
    if (mask->dtype() == mx::bool_) {
      p.mask = MaskKind::Bool;
    } else if (mask->dtype() == mx::float32) {
      p.mask = MaskKind::Additive;
    } else {
      fail("a boolean or float32 mask");
    }
    ins.push_back(mx::broadcast_to(*mask, x.shape(), s));
  }
  return make(SoftmaxKind::Forward, p, std::move(ins), mx::to_stream(s));
}

}  // namespace mlxnote
