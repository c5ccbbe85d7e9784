/* Forwarding shim: MLX's standard BLAS/LAPACK names -> scipy-openblas32's prefixed ones.
 *
 * libmlx.so (mlx[cpu] on Linux) imports cblas_sgemm, cblas_dgemm, cblas_cgemm and a few
 * LAPACK routines, which it finds in a bundled *reference* BLAS/LAPACK. PyPI's
 * scipy-openblas32 exports the same functions only as scipy_cblas_sgemm, scipy_sgeqrf_, ...
 * mlxnote/_platform.py compiles this file once (cc -O2 -shared -fPIC), loads
 * libscipy_openblas.so and then this shim with RTLD_GLOBAL *before* mlx.core is imported,
 * so the dynamic linker binds libmlx.so's references to the names defined here.
 *
 * The shim links against nothing: its references to scipy_* resolve at load time against
 * the already loaded (RTLD_GLOBAL) libscipy_openblas.so.
 *
 * - cblas_{s,d,c}gemm: typed C wrappers (portable) that also count calls, so
 *   `python -m mlxnote info` and the tests can prove MLX really calls OpenBLAS.
 * - LAPACK (x86_64 and aarch64 only): one-instruction tail jumps, which pass every argument
 *   through untouched, including Fortran's hidden string lengths. On other architectures
 *   these are not defined and MLX keeps its reference LAPACK (correct, just slower).
 */
#include <stddef.h>

typedef int blasint; /* scipy-openblas32: 32-bit integers (LP64) */

void scipy_cblas_sgemm(int order, int ta, int tb, blasint m, blasint n, blasint k, float alpha,
                       const float *a, blasint lda, const float *b, blasint ldb, float beta,
                       float *c, blasint ldc);
void scipy_cblas_dgemm(int order, int ta, int tb, blasint m, blasint n, blasint k, double alpha,
                       const double *a, blasint lda, const double *b, blasint ldb, double beta,
                       double *c, blasint ldc);
void scipy_cblas_cgemm(int order, int ta, int tb, blasint m, blasint n, blasint k,
                       const void *alpha, const void *a, blasint lda, const void *b, blasint ldb,
                       const void *beta, void *c, blasint ldc);

static unsigned long long mlxnote_calls;

#define COUNT() __atomic_fetch_add(&mlxnote_calls, 1ULL, __ATOMIC_RELAXED)

/* Number of cblas_*gemm calls forwarded so far (read by mlxnote through ctypes). */
unsigned long long mlxnote_blas_calls(void) {
    return __atomic_load_n(&mlxnote_calls, __ATOMIC_RELAXED);
}

/* 1 when the LAPACK routines below are forwarded too, 0 when MLX keeps reference LAPACK. */
int mlxnote_lapack_forwarded(void);

void cblas_sgemm(int order, int ta, int tb, blasint m, blasint n, blasint k, float alpha,
                 const float *a, blasint lda, const float *b, blasint ldb, float beta, float *c,
                 blasint ldc) {
    COUNT();
    scipy_cblas_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void cblas_dgemm(int order, int ta, int tb, blasint m, blasint n, blasint k, double alpha,
                 const double *a, blasint lda, const double *b, blasint ldb, double beta,
                 double *c, blasint ldc) {
    COUNT();
    scipy_cblas_dgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void cblas_cgemm(int order, int ta, int tb, blasint m, blasint n, blasint k, const void *alpha,
                 const void *a, blasint lda, const void *b, blasint ldb, const void *beta,
                 void *c, blasint ldc) {
    COUNT();
    scipy_cblas_cgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* The LAPACK routines libmlx.so 0.32 imports (nm -D --undefined-only libmlx.so). */
#define MLXNOTE_LAPACK(X)                                                                       \
    X(sgeev_) X(dgeev_) X(cgeev_) X(sgesdd_) X(dgesdd_) X(cgesdd_) X(ssyevd_) X(dsyevd_)        \
    X(cheevd_) X(sgeqrf_) X(dgeqrf_) X(sorgqr_) X(dorgqr_) X(sgetrf_) X(dgetrf_) X(sgetri_)     \
    X(dgetri_) X(spotrf_) X(dpotrf_) X(strtri_) X(dtrtri_)

#if defined(__x86_64__)
/* endbr64 is a no-op on CPUs without CET; the jmp goes through the PLT. */
#define MLXNOTE_JUMP(name)                                                                      \
    __asm__(".text\n.globl " #name "\n.type " #name ",@function\n.p2align 4\n" #name ":\n"      \
            "\tendbr64\n\tjmp scipy_" #name "@PLT\n.size " #name ",.-" #name "\n");
MLXNOTE_LAPACK(MLXNOTE_JUMP)
int mlxnote_lapack_forwarded(void) { return 1; }
#elif defined(__aarch64__)
/* hint #34 is `bti c` (a no-op without BTI); `b` to an undefined symbol goes through the PLT. */
#define MLXNOTE_JUMP(name)                                                                      \
    __asm__(".text\n.globl " #name "\n.type " #name ",%function\n.p2align 4\n" #name ":\n"      \
            "\thint #34\n\tb scipy_" #name "\n.size " #name ",.-" #name "\n");
MLXNOTE_LAPACK(MLXNOTE_JUMP)
int mlxnote_lapack_forwarded(void) { return 1; }
#else
int mlxnote_lapack_forwarded(void) { return 0; }
#endif
