#include "dropout.h"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"

#include "pool.h"

namespace mlxnote {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("mlxnote dropout: " + what);
}

constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

inline uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The keep threshold on the hash's high 32 bits (2^32 keeps everything).
uint64_t threshold(float keep) {
  return static_cast<uint64_t>(std::ldexp(static_cast<double>(keep), 32));
}

MLXNOTE_CLONES
void apply_range(const float* __restrict x, float* __restrict y, uint64_t seed, uint64_t thr,
                 float scale, int64_t lo, int64_t hi) {
  for (int64_t i = lo; i < hi; ++i) {
    const uint64_t h = mix(seed + static_cast<uint64_t>(i + 1) * kGamma);
    y[i] = (h >> 32) < thr ? x[i] * scale : 0.0f;
  }
}

MLXNOTE_CLONES
void mask_range(bool* __restrict m, uint64_t seed, uint64_t thr, int64_t lo, int64_t hi) {
  for (int64_t i = lo; i < hi; ++i) {
    m[i] = (mix(seed + static_cast<uint64_t>(i + 1) * kGamma) >> 32) < thr;
  }
}

uint64_t seed_of(const uint32_t* s) {
  return (static_cast<uint64_t>(s[0]) << 32) | s[1];
}

constexpr int64_t kGrain = 1 << 15;

}  // namespace

void Dropout::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  auto& encoder = mx::cpu::get_command_encoder(stream());
  for (const auto& a : inputs) {
    if (!a.flags().row_contiguous) {
      fail("inputs must be row-contiguous");
    }
    encoder.set_input_array(a);
  }
  out.set_data(mx::allocator::malloc(out.nbytes()));
  encoder.set_output_array(out);
  const uint64_t thr = threshold(p_.keep);
  const int64_t n = static_cast<int64_t>(out.size());
  if (kind_ == DropoutKind::Mask) {
    // The seed is read when the task runs (the task computing it may still be queued).
    encoder.dispatch([m = out.data<bool>(), s = inputs[0].data<uint32_t>(), thr, n]() {
      const uint64_t seed = seed_of(s);
      ThreadPool::instance().parallel_for(n, kGrain, [&](int64_t lo, int64_t hi, int) {
        mask_range(m, seed, thr, lo, hi);
      });
    });
    return;
  }
  const float scale = static_cast<float>(1.0 / p_.keep);
  encoder.dispatch([x = inputs[0].data<float>(), y = out.data<float>(),
                    s = inputs[1].data<uint32_t>(), thr, scale, n]() {
    const uint64_t seed = seed_of(s);
    ThreadPool::instance().parallel_for(n, kGrain, [&](int64_t lo, int64_t hi, int) {
      apply_range(x, y, seed, thr, scale, lo, hi);
    });
  });
}

void Dropout::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  fail("CPU only");
}

std::vector<mx::Shape> Dropout::output_shapes(const std::vector<mx::array>& inputs) {
  return {kind_ == DropoutKind::Mask ? p_.shape : inputs[0].shape()};
}

// Linear in x for a fixed mask: the gradient and the tangent are the same dropout.
std::vector<mx::array> Dropout::vjp(const std::vector<mx::array>& primals,
                                    const std::vector<mx::array>& cotangents,
                                    const std::vector<int>& argnums,
                                    const std::vector<mx::array>&) {
  std::vector<mx::array> res;
  for (int arg : argnums) {
    if (kind_ == DropoutKind::Apply && arg == 0) {
      res.push_back(dropout(cotangents[0], primals[1], p_.keep, stream()));
    } else {
      res.push_back(mx::zeros_like(primals[arg], stream()));
    }
  }
  return res;
}

std::vector<mx::array> Dropout::jvp(const std::vector<mx::array>& primals,
                                    const std::vector<mx::array>& tangents,
                                    const std::vector<int>& argnums) {
  if (kind_ == DropoutKind::Apply) {
    for (size_t i = 0; i < argnums.size(); ++i) {
      if (argnums[i] == 0) {
        return {dropout(tangents[i], primals[1], p_.keep, stream())};
      }
    }
    return {mx::zeros_like(primals[0], stream())};
  }
  return {mx::zeros(p_.shape, mx::bool_, stream())};
}

std::pair<std::vector<mx::array>, std::vector<int>> Dropout::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  // One seed for the whole mapped array: every element of every entry its own draw.
  if (kind_ == DropoutKind::Mask || axes[1] >= 0) {
    fail("vmap over the seed is not supported (draw one seed per call)");
  }
  return {{dropout(inputs[0], inputs[1], p_.keep, stream())}, {axes[0]}};
}

const char* Dropout::name() const {
  return kind_ == DropoutKind::Mask ? "MlxnoteDropoutMask" : "MlxnoteDropout";
}

bool Dropout::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const Dropout*>(&other);
  return o != nullptr && o->kind_ == kind_ && o->p_ == p_;
}

namespace {

mx::array check_seed(const mx::array& seed, mx::Stream s) {
  if (seed.dtype() != mx::uint32 || seed.ndim() != 1 || seed.shape(0) != 2) {
    fail("seed must be a uint32 array of shape (2,) (an MLX random key)");
  }
  return mx::contiguous(seed, false, s);
}

void check_keep(float keep) {
  if (!(keep > 0.0f && keep <= 1.0f)) {
    fail("keep must be in (0, 1], got " + std::to_string(keep));
  }
}

}  // namespace

mx::array dropout(const mx::array& x, const mx::array& seed, float keep,
                  mx::StreamOrDevice s) {
  check_keep(keep);
  if (x.dtype() != mx::float32) {
    fail("float32 inputs only");
  }
  auto st = mx::to_stream(s);
  auto k = check_seed(seed, st);
  return mx::array(x.shape(), mx::float32,
                   std::make_shared<Dropout>(st, DropoutParams{keep, {}}, DropoutKind::Apply),
                   {mx::contiguous(x, false, st), k});
}

mx::array dropout_mask(const mx::array& seed, const mx::Shape& shape, float keep,
                       mx::StreamOrDevice s) {
  check_keep(keep);
  for (int d : shape) {
    if (d < 0) {
      fail("the mask's shape must have sizes >= 0");
    }
  }
  auto st = mx::to_stream(s);
  auto k = check_seed(seed, st);
  return mx::array(shape, mx::bool_,
                   std::make_shared<Dropout>(st, DropoutParams{keep, shape}, DropoutKind::Mask),
                   {k});
}

}  // namespace mlxnote
