#include "blas.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdint>

#include <stdexcept>

#include "mlx/version.h"

namespace mlxnote::blas {

namespace {

using sgemm_fn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*,
                          int, float, float*, int);

// The global one first (mlxnote's shim when it is loaded: the one MLX's matmul calls), else
// the one libmlx resolves from its own dependencies.
sgemm_fn find() {
  if (void* fn = dlsym(RTLD_DEFAULT, "cblas_sgemm")) {
    return reinterpret_cast<sgemm_fn>(fn);
  }
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&mlx::core::version), &info) == 0 || !info.dli_fname) {
    return nullptr;
  }
  void* mlx = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  return mlx ? reinterpret_cast<sgemm_fn>(dlsym(mlx, "cblas_sgemm")) : nullptr;
}

sgemm_fn lookup() {
  static sgemm_fn fn = find();
  return fn;
}

using ok_fn = int (*)();

// The shim's one-thread sgemm and whether it is one-thread now (absent: no shim).
struct Serial {
  sgemm_fn gemm = reinterpret_cast<sgemm_fn>(dlsym(RTLD_DEFAULT, "mlxnote_sgemm_serial"));
  ok_fn ok = reinterpret_cast<ok_fn>(dlsym(RTLD_DEFAULT, "mlxnote_sgemm_serial_ok"));
};

const Serial& serial() {
  static Serial s;
  return s;
}

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

}  // namespace

bool available() {
  return lookup() != nullptr;
}

void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
           int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  auto fn = lookup();
  if (fn == nullptr) {
    throw std::runtime_error("mlxnote: no cblas_sgemm in this process");
  }
  fn(kRowMajor, trans_a ? kTrans : kNoTrans, trans_b ? kTrans : kNoTrans, m, n, k, alpha, a,
     lda, b, ldb, beta, c, ldc);
}

bool serial_available() {
  const auto& s = serial();
  return s.gemm != nullptr && s.ok != nullptr && s.ok() != 0;
}

void sgemm_serial(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                  int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  serial().gemm(kRowMajor, trans_a ? kTrans : kNoTrans, trans_b ? kTrans : kNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
}

void row_block_product(int m, int n, int rows, const float* a, int lda, const float* b,
                       int ldb, float* c, int ldc) {
  constexpr int kChunks = 16;
  const int len = rows / kChunks >= 4 ? rows / kChunks : rows;
  for (int r0 = 0; r0 < rows; r0 += len) {
    const int k = std::min(len, rows - r0);
    sgemm(true, false, m, n, k, 1.0f, a + int64_t(r0) * lda, lda, b + int64_t(r0) * ldb, ldb,
          r0 ? 1.0f : 0.0f, c, ldc);
  }
  if (rows == 0) {
    sgemm(true, false, m, n, 0, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  }
}

}  // namespace mlxnote::blas
