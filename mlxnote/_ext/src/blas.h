// The process's cblas_sgemm (OpenBLAS through mlxnote's shim on Linux, Accelerate on macOS),
// found at run time: mlxnote's C++ kernels call the same BLAS as MLX's matmul.
#pragma once

namespace mlxnote::blas {

// C = alpha * op(A) @ op(B) + beta * C, row major; false when no cblas_sgemm is loaded.
bool available();
void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
           int lda, const float* b, int ldb, float beta, float* c, int ldc);

// C (m x n) = A^T B over `rows` rows of A (rows x m, lda) and B (rows x n, ldb), as a sum of
// up to 17 partial products of consecutive row blocks (each accumulated into C by the GEMM),
// so float32 rounding grows with the block length plus the block count instead of with
// `rows` (mlxnote.kernels.linear.row_block_product, the same way).
void row_block_product(int m, int n, int rows, const float* a, int lda, const float* b,
                       int ldb, float* c, int ldc);

// True when sgemm_serial runs on the calling thread alone (mlxnote's shim with oneDNN, or
// with per-call OpenBLAS threads): several threads may then each run GEMMs side by side.
bool serial_available();
// sgemm on one thread (the same library choice as the shim's cblas_sgemm); only where
// serial_available().
void sgemm_serial(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                  int lda, const float* b, int ldb, float beta, float* c, int ldc);

}  // namespace mlxnote::blas
