// Shared by mlxnote's primitives: ISA dispatch for hot loops, and the overrides every
// primitive declares.
#pragma once

// Hot loops are compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at load time
// (target_clones: no -march=native in what others install); elsewhere (arm64: NEON is
// baseline) they are compiled once.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__)
#define MLXNOTE_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MLXNOTE_CLONES
#endif

#include <vector>

#include "mlx/ops.h"
#include "mlx/primitives.h"

namespace mlxnote {

// A single-output primitive configured by its parameters and which of its kinds it is.
template <class Params, class Kind>
class Parameterized : public mlx::core::UnaryPrimitive {
 public:
  Parameterized(mlx::core::Stream stream, Params p, Kind kind)
      : mlx::core::UnaryPrimitive(stream), p_(p), kind_(kind) {}

 protected:
  Params p_;
  Kind kind_;
};

// vmap's inputs with the mapped axis first, every one broadcast to the mapped size (an
// unmapped input gets a new leading axis).
inline std::vector<mlx::core::array> mapped_first(const std::vector<mlx::core::array>& inputs,
                                                  const std::vector<int>& axes,
                                                  mlx::core::Stream s) {
  namespace mx = mlx::core;
  int size = 1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] >= 0) {
      size = inputs[i].shape(axes[i]);
    }
  }
  std::vector<mx::array> out;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto a = axes[i] >= 0 ? mx::moveaxis(inputs[i], axes[i], 0, s)
                          : mx::expand_dims(inputs[i], 0, s);
    auto shape = a.shape();
    shape[0] = size;
    out.push_back(mx::broadcast_to(a, shape, s));
  }
  return out;
}

// vmap by entries: op(the inputs at entry k of the mapped axis) for every k, each of its
// outputs stacked on a new axis 0 (correct for any mapped inputs).
template <class Op>
std::pair<std::vector<mlx::core::array>, std::vector<int>> vmap_entries(
    const std::vector<mlx::core::array>& inputs, const std::vector<int>& axes,
    mlx::core::Stream s, Op op) {
  namespace mx = mlx::core;
  int size = -1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] >= 0) {
      size = inputs[i].shape(axes[i]);
    }
  }
  std::vector<std::vector<mx::array>> per_output;
  for (int k = 0; k < size; ++k) {
    std::vector<mx::array> args;
    for (size_t i = 0; i < inputs.size(); ++i) {
      args.push_back(axes[i] >= 0 ? mx::take(inputs[i], k, axes[i], s) : inputs[i]);
    }
    std::vector<mx::array> outs = op(args);
    per_output.resize(outs.size());
    for (size_t j = 0; j < outs.size(); ++j) {
      per_output[j].push_back(outs[j]);
    }
  }
  std::vector<mx::array> stacked;
  for (auto& o : per_output) {
    stacked.push_back(mx::stack(o, 0, s));
  }
  return {stacked, std::vector<int>(stacked.size(), 0)};
}

// The tangent of every primal: the given ones at `argnums`, zeros elsewhere (for the jvp of
// an MLX-op form of a primitive).
inline std::vector<mlx::core::array> full_tangents(const std::vector<mlx::core::array>& primals,
                                                   const std::vector<mlx::core::array>& tangents,
                                                   const std::vector<int>& argnums,
                                                   mlx::core::Stream s) {
  std::vector<mlx::core::array> t;
  for (const auto& a : primals) {
    t.push_back(mlx::core::zeros_like(a, s));
  }
  for (size_t i = 0; i < argnums.size(); ++i) {
    t[argnums[i]] = tangents[i];
  }
  return t;
}

}  // namespace mlxnote

// The methods of a multi-output MLX primitive (eval into several outputs), as below.
#define MLXNOTE_MULTI_PRIMITIVE_METHODS                                                   \
  void eval_cpu(const std::vector<mx::array>& inputs,                                    \
                std::vector<mx::array>& outputs) override;                               \
  void eval_gpu(const std::vector<mx::array>& inputs,                                    \
                std::vector<mx::array>& outputs) override;                               \
  std::vector<mx::array> jvp(const std::vector<mx::array>& primals,                      \
                             const std::vector<mx::array>& tangents,                     \
                             const std::vector<int>& argnums) override;                  \
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,                      \
                             const std::vector<mx::array>& cotangents,                   \
                             const std::vector<int>& argnums,                            \
                             const std::vector<mx::array>& outputs) override;            \
  std::pair<std::vector<mx::array>, std::vector<int>> vmap(                              \
      const std::vector<mx::array>& inputs, const std::vector<int>& axes) override;      \
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;   \
  bool is_equivalent(const mx::Primitive& other) const override;

// The methods of a single-output MLX primitive with a CPU kernel and closed-form
// transforms (each primitive defines them in its .cpp).
#define MLXNOTE_PRIMITIVE_METHODS                                                         \
  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override;          \
  void eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) override;          \
  std::vector<mx::array> jvp(const std::vector<mx::array>& primals,                      \
                             const std::vector<mx::array>& tangents,                     \
                             const std::vector<int>& argnums) override;                  \
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,                      \
                             const std::vector<mx::array>& cotangents,                   \
                             const std::vector<int>& argnums,                            \
                             const std::vector<mx::array>& outputs) override;            \
  std::pair<std::vector<mx::array>, std::vector<int>> vmap(                              \
      const std::vector<mx::array>& inputs, const std::vector<int>& axes) override;      \
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;   \
  const char* name() const override;                                                     \
  bool is_equivalent(const mx::Primitive& other) const override;
