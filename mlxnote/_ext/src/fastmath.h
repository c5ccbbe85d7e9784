// Vectorizable float32 exp, sigmoid and tanh (the same formulas as mlxnote.kernels.fastmath:
// Cephes' expf with the exponent built in the float's bits; tanh as a rational function
// near 0 and from exp elsewhere). Plain scalar code that the compiler vectorizes inside the
// loops that call it; within 1.2e-7 absolute of float64 for sigmoid and tanh.
#pragma once

#include <cstdint>
#include <cstring>

#define MLXNOTE_INLINE inline __attribute__((always_inline))

namespace mlxnote::fast {

MLXNOTE_INLINE float exp(float x) {
  x = x < -88.0f ? -88.0f : (x > 88.0f ? 88.0f : x);
  const float t = x * 1.4426950408889634f + 12582912.0f;  // + 1.5 * 2^23 rounds to n
  const float n = t - 12582912.0f;
  const float r = x - n * 0.693359375f - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &t, sizeof(bits));
  bits = (bits - (0x4B400000 - 127)) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

MLXNOTE_INLINE float sigmoid(float x) {
  return 1.0f / (1.0f + exp(-x));
}

MLXNOTE_INLINE float tanh(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float e = exp(-2.0f * ax);
  const float big = (1.0f - e) / (1.0f + e);
  const float s = x < -0.55f ? -0.55f : (x > 0.55f ? 0.55f : x);
  const float s2 = s * s;
  // x - x * D(x^2) / Q(x^2): Eigen's rational tanh, rewritten so rounding touches only the
  // small correction term.
  float d = 2.76076847742355e-16f;
  d = d * s2 + -2.00018790482477e-13f;
  d = d * s2 + 8.60467152213735e-11f;
  d = d * s2 + 1.14703542e-06f;
  d = d * s2 + 1.03677482115e-04f;
  d = d * s2 + 1.63117270356356e-03f;
  d = d * s2 + 6.2662599e-10f;
  float q = 1.19825839466702e-06f;
  q = q * s2 + 1.18534705686654e-04f;
  q = q * s2 + 2.26843463243900e-03f;
  q = q * s2 + 4.89352518554385e-03f;
  const float small = s - s * (d / q);
  return ax < 0.55f ? small : (x < 0.0f ? -big : big);
}

}  // namespace mlxnote::fast
