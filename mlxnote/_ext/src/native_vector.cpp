#include "native_vector.h"

#include <cstdlib>
#include <string>

namespace mlxnote::kernels {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__)
int vector_floats() {
  static const int lanes = [] {
    const char* cap = std::getenv("MLXNOTE_SIMD");
    const std::string c = cap != nullptr ? cap : "";
    if (__builtin_cpu_supports("x86-64-v4") && c != "avx2" && c != "baseline") {
      return 16;
    }
    return __builtin_cpu_supports("x86-64-v3") && c != "baseline" ? 8 : 4;
  }();
  return lanes;
}
#else
int vector_floats() {
  return kLanes<MLXNOTE_VECTOR>;
}
#endif

}  // namespace mlxnote::kernels
