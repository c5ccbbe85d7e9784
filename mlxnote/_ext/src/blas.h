// The process's cblas_sgemm (OpenBLAS through mlxnote's shim on Linux, Accelerate on macOS),
// found at run time: mlxnote's C++ kernels call the same BLAS as MLX's matmul.
#pragma once

namespace mlxnote::blas {

// C = alpha * op(A) @ op(B) + beta * C, row major; false when no cblas_sgemm is loaded.
bool available();
void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
           int lda, const float* b, int ldb, float beta, float* c, int ldc);

// True when sgemm_serial runs on the calling thread alone (mlxnote's shim with oneDNN, or
// with per-call OpenBLAS threads): several threads may then each run GEMMs side by side.
bool serial_available();
// sgemm on one thread (the same library choice as the shim's cblas_sgemm); only where
// serial_available().
void sgemm_serial(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                  int lda, const float* b, int ldb, float beta, float* c, int ldc);

}  // namespace mlxnote::blas
