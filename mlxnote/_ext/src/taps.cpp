#include "taps.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/transforms.h"

#include "blas.h"
#include "columns.h"
#include "pool.h"

namespace mlxnote {

namespace {

using Arrays = std::vector<mx::array>;

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("mlxnote tap_products: " + what);
}

// Rows per GEMM: K = 1024 keeps a chunk of both operands in L2 for all taps (measured on
// the weight gradients of conv1d 16x1024 64->64, conv2d 16x64x64 32->64 and a stride-2
// conv2d_transpose: 1024 and 2048 alike, 4096 up to 8% slower, 8192 up to 25%). The chunks
// go in kGroups consecutive groups, each summed in place into its own partial (bounded
// memory), the partials added in order: the same sum on any thread count.
constexpr int kChunk = 1024;
constexpr int kGroups = 16;

// The MLX-op form (the transforms): in = dy, xs... -> (co, taps, ci).
mx::array plain(const TapsParams& p, const Arrays& in, mx::Stream s) {
  const int co = in[0].shape(1);
  auto d = mx::transpose(mx::slice(in[0], {0, 0}, {p.rows, co}, s), s);
  Arrays parts;
  for (const auto& [ph, off] : p.taps) {
    const auto& x = in[1 + ph];
    parts.push_back(mx::matmul(d, mx::slice(x, {off, 0}, {off + p.rows, x.shape(1)}, s), s));
  }
  return mx::stack(parts, 1, s);
}

}  // namespace

void TapProducts::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  for (const auto& a : inputs) {
    if (a.dtype() != mx::float32 || a.ndim() != 2 || !a.flags().row_contiguous) {
      fail("row-contiguous 2-D float32 operands only");
    }
  }
  out.set_data(mx::allocator::malloc(out.nbytes()));
  auto& encoder = mx::cpu::get_command_encoder(stream());
  for (const auto& a : inputs) {
    encoder.set_input_array(a);
  }
  encoder.set_output_array(out);
  encoder.dispatch([in = inputs, p = p_, po = out.data<float>()]() {
    const int co = in[0].shape(1), ci = in.size() > 1 ? in[1].shape(1) : 0;
    const int taps = static_cast<int>(p.taps.size());
    const int64_t mat = int64_t(ci) * co;
    auto& pool = ThreadPool::instance();
    const bool serial = blas::serial_available();  // else each GEMM on the BLAS's threads
    const int chunks = (p.rows + kChunk - 1) / kChunk;
    const int groups = std::min(chunks, kGroups);
    if (chunks == 0 || mat == 0) {
      std::fill(po, po + mat * taps, 0.0f);
      return;
    }
    // per group and tap, (ci, co): the sum over the group's chunks of x's rows^T dy's rows
    std::vector<float> part(size_t(groups) * taps * mat);
    const float* d = in[0].data<float>();
    auto products = [&](int64_t b, int64_t e, int) {
      for (int64_t g = b; g < e; ++g) {
        for (int64_t c = g * chunks / groups; c < (g + 1) * chunks / groups; ++c) {
          const int r0 = static_cast<int>(c) * kChunk, k = std::min(kChunk, p.rows - r0);
          const float beta = c == g * chunks / groups ? 0.0f : 1.0f;
          for (int t = 0; t < taps; ++t) {
            const auto [ph, off] = p.taps[t];
            const float* x = in[1 + ph].data<float>() + (int64_t(r0) + off) * ci;
            float* to = part.data() + (g * taps + t) * mat;
            (serial ? blas::sgemm_serial : blas::sgemm)(true, false, ci, co, k, 1.0f, x, ci,
                                                         d + int64_t(r0) * co, co, beta, to,
                                                         co);
          }
        }
      }
    };
    if (serial) {
      pool.parallel_for(groups, 1, products);
    } else {
      products(0, groups, 0);
    }
    // the groups added in order (the same sum on any thread count), into (co, taps, ci)
    pool.parallel_for(taps, 1, [&](int64_t b, int64_t e, int) {
      std::vector<float> acc(mat);
      for (int64_t t = b; t < e; ++t) {
        std::memcpy(acc.data(), part.data() + t * mat, sizeof(float) * mat);
        for (int g = 1; g < groups; ++g) {
          const float* q = part.data() + (int64_t(g) * taps + t) * mat;
          for (int64_t j = 0; j < mat; ++j) {
            acc[j] += q[j];
          }
        }
        for (int i = 0; i < ci; ++i) {
          for (int o = 0; o < co; ++o) {
            po[(int64_t(o) * taps + t) * ci + i] = acc[int64_t(i) * co + o];
          }
        }
      }
    });
  });
}

void TapProducts::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::runtime_error("mlxnote tap_products: CPU only");
}

std::vector<mx::Shape> TapProducts::output_shapes(const std::vector<mx::array>& inputs) {
  return {{inputs[0].shape(1), static_cast<int>(p_.taps.size()),
           inputs.size() > 1 ? inputs[1].shape(1) : 0}};
}

std::vector<mx::array> TapProducts::vjp(const std::vector<mx::array>& primals,
                                        const std::vector<mx::array>& cotangents,
                                        const std::vector<int>& argnums,
                                        const std::vector<mx::array>&) {
  const auto s = stream();
  const auto p = p_;
  auto grads = mx::vjp([p, s](const Arrays& a) { return Arrays{plain(p, a, s)}; }, primals,
                       cotangents)
                   .second;
  Arrays out;
  for (int a : argnums) {
    out.push_back(grads[a]);
  }
  return out;
}

std::vector<mx::array> TapProducts::jvp(const std::vector<mx::array>& primals,
                                        const std::vector<mx::array>& tangents,
                                        const std::vector<int>& argnums) {
  const auto s = stream();
  const auto p = p_;
  return mx::jvp([p, s](const Arrays& a) { return Arrays{plain(p, a, s)}; }, primals,
                 full_tangents(primals, tangents, argnums, s))
      .second;
}

std::pair<std::vector<mx::array>, std::vector<int>> TapProducts::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  const auto p = p_;
  return vmap_entries(inputs, axes, stream(), [&](const Arrays& e) {
    return Arrays{tap_products(e[0], Arrays(e.begin() + 1, e.end()), p.taps, p.rows, stream())};
  });
}

const char* TapProducts::name() const {
  return "MlxnoteTapProducts";
}

bool TapProducts::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const TapProducts*>(&other);
  return o != nullptr && o->p_ == p_;
}

mx::array tap_products(const mx::array& dy, const std::vector<mx::array>& xs,
                       const std::vector<std::pair<int, int>>& taps, int rows,
                       mx::StreamOrDevice s) {
  auto stream = mx::to_stream(s);
  if (dy.ndim() != 2 || rows < 0 || rows > dy.shape(0)) {
    fail("dy must be (R, co) with rows <= R");
  }
  Arrays ins = {contiguous_rows(dy, stream)};
  for (const auto& x : xs) {
    if (x.ndim() != 2 || x.shape(1) != xs[0].shape(1)) {
      fail("every phase must be (R_p, ci) with one ci");
    }
    ins.push_back(contiguous_rows(x, stream));
  }
  for (const auto& [ph, off] : taps) {
    if (ph < 0 || ph >= static_cast<int>(xs.size()) || off < 0 ||
        off + rows > xs[ph].shape(0)) {
      fail("a tap reads past its phase");
    }
  }
  auto prim = std::make_shared<TapProducts>(stream, TapsParams{taps, rows}, 0);
  auto shape = prim->output_shapes(ins)[0];
  return mx::array(std::move(shape), mx::float32, std::move(prim), std::move(ins));
}

}  // namespace mlxnote
