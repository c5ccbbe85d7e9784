// The CPU's native float vector for hand-blocked kernels. GCC's generic vector types of
// another width than the ISA's are kept in memory (a 16-float vector on AVX2: every
// accumulator on the stack), so such kernels are templates on the vector type, instantiated
// once per ISA (MLXNOTE_NATIVE_VECTOR) and picked once at load: 16 floats (AVX-512), 8
// (AVX2), 4 (SSE, NEON with GCC); clang splits a 16-float vector into four NEON registers.
// MLXNOTE_SIMD=avx2|baseline caps it (tests run the narrower instances on any x86 machine).
#pragma once

#include "fastmath.h"  // MLXNOTE_INLINE

// The helpers are always inlined into the per-ISA entry points, so no call passes a vector
// by value between ISAs (the -Wpsabi note about that ABI does not apply).
#pragma GCC diagnostic ignored "-Wpsabi"

namespace mlxnote::kernels {

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));
template <class V>
constexpr int kLanes = sizeof(V) / sizeof(float);

// A block of `b` floats: a full vector (Full) or a tail, zero-padded.
template <class V, bool Full>
MLXNOTE_INLINE V load(const float* p, int b) {
  V v = {};
  __builtin_memcpy(&v, p, Full ? sizeof(V) : sizeof(float) * b);
  return v;
}

template <class V, bool Full>
MLXNOTE_INLINE void store(float* p, const V& v, int b) {
  __builtin_memcpy(p, &v, Full ? sizeof(V) : sizeof(float) * b);
}

// The floats in the vector the native-vector kernels run on here.
int vector_floats();

}  // namespace mlxnote::kernels

// void name params: impl<the native vector> args, one instance per ISA (x86-64 with GCC).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__)
#define MLXNOTE_NATIVE_VECTOR(name, impl, params, args)                        \
  __attribute__((target("arch=x86-64-v4"))) void name##_v4 params {          \
    impl<v16> args;                                                            \
  }                                                                            \
  __attribute__((target("arch=x86-64-v3"))) void name##_v3 params {          \
    impl<v8> args;                                                             \
  }                                                                            \
  void name##_v1 params {                                                      \
    impl<v4> args;                                                             \
  }                                                                            \
  void name params {                                                           \
    static const auto fn = vector_floats() == 16  ? name##_v4                  \
                           : vector_floats() == 8 ? name##_v3                  \
                                                  : name##_v1;                 \
    fn args;                                                                   \
  }
#else
#if defined(__clang__)
#define MLXNOTE_VECTOR v16
#else
#define MLXNOTE_VECTOR v4
#endif
#define MLXNOTE_NATIVE_VECTOR(name, impl, params, args) \
  void name params {                                    \
    impl<MLXNOTE_VECTOR> args;                          \
  }
#endif
