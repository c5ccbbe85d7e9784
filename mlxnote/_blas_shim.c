/* Forwarding shim: MLX's standard BLAS/LAPACK names -> scipy-openblas32's prefixed ones.
 *
 * libmlx.so (mlx[cpu] on Linux) imports cblas_sgemm, cblas_dgemm, cblas_cgemm and a few
 * LAPACK routines, which it finds in a bundled *reference* BLAS/LAPACK. PyPI's
 * scipy-openblas32 exports the same functions only as scipy_cblas_sgemm, scipy_sgeqrf_, ...
 * mlxnote/_platform.py compiles this file once (cc -O2 -shared -fPIC; it links against
 * nothing), then, *before* mlx.core is imported:
 *   1. loads libscipy_openblas.so privately (RTLD_LOCAL: its ~5000 symbols stay out of the
 *      global scope, so e.g. SciPy keeps binding to its own OpenBLAS copy);
 *   2. loads this shim privately and hands it the address of each scipy_<name> through
 *      mlxnote_shim_bind (mlxnote_shim_name lists the names);
 *   3. only when every slot is bound, promotes the shim to RTLD_GLOBAL (RTLD_NOLOAD), so the
 *      dynamic linker binds libmlx.so's references to the names defined here. A failure
 *      before that leaves MLX's stock BLAS untouched.
 *
 * - cblas_{s,d,c}gemm: typed C wrappers (portable) that also count calls, so
 *   `python -m mlxnote info` and the tests can prove MLX really calls OpenBLAS, and that
 *   choose OpenBLAS's thread count per call (see "Threads" below). cblas_sgemm sends the
 *   shapes where oneDNN's sgemm is faster to it when mlxnote_shim_dnnl bound it (see
 *   "oneDNN" below).
 * - LAPACK (x86_64 and aarch64 only): an indirect tail jump through the bound slot, which
 *   passes every argument through untouched, including Fortran's hidden string lengths. On
 *   other architectures these are not defined and MLX keeps its reference LAPACK (correct,
 *   just slower).
 */
#include <stddef.h>

typedef int blasint; /* scipy-openblas32: 32-bit integers (LP64) */

typedef void (*sgemm_fn)(int, int, int, blasint, blasint, blasint, float, const float *, blasint,
                         const float *, blasint, float, float *, blasint);
typedef void (*dgemm_fn)(int, int, int, blasint, blasint, blasint, double, const double *,
                         blasint, const double *, blasint, double, double *, blasint);
typedef void (*cgemm_fn)(int, int, int, blasint, blasint, blasint, const void *, const void *,
                         blasint, const void *, blasint, const void *, void *, blasint);

/* The LAPACK routines libmlx.so 0.32 imports (nm -D --undefined-only libmlx.so). */
#define MLXNOTE_LAPACK(X)                                                                       \
    X(sgeev_) X(dgeev_) X(cgeev_) X(sgesdd_) X(dgesdd_) X(cgesdd_) X(ssyevd_) X(dsyevd_)        \
    X(cheevd_) X(sgeqrf_) X(dgeqrf_) X(sorgqr_) X(dorgqr_) X(sgetrf_) X(dgetrf_) X(sgetri_)     \
    X(dgetri_) X(spotrf_) X(dpotrf_) X(strtri_) X(dtrtri_)

#if defined(__x86_64__) || defined(__aarch64__)
#define MLXNOTE_FORWARD_LAPACK 1
#else
#define MLXNOTE_FORWARD_LAPACK 0
#endif

/* One slot per forwarded name, filled by mlxnote_shim_bind (hidden: not exported). */
#define HIDDEN __attribute__((visibility("hidden")))
#define SLOT(name) HIDDEN void *mlxnote_p_##name;
SLOT(cblas_sgemm) SLOT(cblas_dgemm) SLOT(cblas_cgemm)
#if MLXNOTE_FORWARD_LAPACK
MLXNOTE_LAPACK(SLOT)
#endif

#define NAME(name) #name,
static const char *const names[] = {"cblas_sgemm", "cblas_dgemm", "cblas_cgemm",
#if MLXNOTE_FORWARD_LAPACK
                                    MLXNOTE_LAPACK(NAME)
#endif
                                    NULL};
#define ADDR(name) &mlxnote_p_##name,
static void **const slots[] = {&mlxnote_p_cblas_sgemm, &mlxnote_p_cblas_dgemm,
                               &mlxnote_p_cblas_cgemm,
#if MLXNOTE_FORWARD_LAPACK
                               MLXNOTE_LAPACK(ADDR)
#endif
};
#define NSLOTS ((int)(sizeof(slots) / sizeof(slots[0])))

/* The i-th name to bind (its OpenBLAS symbol is "scipy_" + name), NULL after the last. */
const char *mlxnote_shim_name(int i) { return (i >= 0 && i < NSLOTS) ? names[i] : NULL; }

/* Bind slot i to fn; returns 0 on success. */
int mlxnote_shim_bind(int i, void *fn) {
    if (i < 0 || i >= NSLOTS || fn == NULL) return -1;
    *slots[i] = fn;
    return 0;
}

/* 1 when every slot is bound: only then may the shim be made global. */
int mlxnote_shim_ready(void) {
    for (int i = 0; i < NSLOTS; i++)
        if (*slots[i] == NULL) return 0;
    return 1;
}

/* 1 when the LAPACK routines are forwarded too, 0 when MLX keeps reference LAPACK. */
int mlxnote_lapack_forwarded(void) { return MLXNOTE_FORWARD_LAPACK; }

static unsigned long long mlxnote_calls;

/* Number of cblas_*gemm calls forwarded so far (read by mlxnote through ctypes). */
unsigned long long mlxnote_blas_calls(void) {
    return __atomic_load_n(&mlxnote_calls, __ATOMIC_RELAXED);
}

#define COUNT() __atomic_fetch_add(&mlxnote_calls, 1ULL, __ATOMIC_RELAXED)

/* Threads. OpenBLAS splits a GEMM statically over its threads and waits for the slowest.
 * When other processes keep the cores busy, a helper thread waits for a scheduler slice
 * (milliseconds) on every call: a small model's training step measured 24 ms with 2
 * threads against 0.26 ms with 1. So each call picks its thread count:
 *  - below MLXNOTE_MIN_MULTI multiply-adds, one thread (threads cannot pay off there);
 *  - above, all threads, unless the machine is busy: a multi-threaded call that took longer
 *    than one thread would have (its size class's measured single-thread rate) makes the
 *    calls of that shape single-threaded for a while (MLXNOTE_BUSY_NS, doubling up to
 *    MLXNOTE_MAX_BUSY_NS while it stays slow, back to the start once a threaded call is
 *    fast again); then threads are tried again. Only a
 *    shape that has run faster on threads before makes every shape single-threaded (the
 *    machine's busy state): a shape that threads never speed up, even on an idle machine
 *    (the many 256x256x32 products of a per-head matmul), would otherwise have kept every
 *    GEMM of the process on one thread (measured: a Transformer's forward 55 -> 82 ms after
 *    an mlx.nn one ran in the same process). The while is time, not a count of calls: a
 *    disturbance is (another process's threads spinning for milliseconds after their
 *    work), and a count had grown to 65536 calls in a benchmark that ran TF and PyTorch in
 *    turn with mlxnote, keeping a Transformer's training step single-threaded.
 * The single-thread rate per size class (powers of 4 of the multiply-adds) is learned
 * from the single-threaded calls themselves (the first calls of each class run on one
 * thread to measure it), per library (OpenBLAS, oneDNN); the shapes' states sit in a small
 * direct-mapped table (a new shape takes its slot over). mlxnote_shim_threads(setter, n)
 * turns this on; without it (or n == 1) OpenBLAS's calls pass through untouched and
 * oneDNN's get n threads. Races between threads only blur the statistics. */
#include <time.h>

typedef void (*set_threads_fn)(int);
#define MLXNOTE_MIN_MULTI (1 << 21)
#define MLXNOTE_BUSY_NS 5e6     /* 5 ms */
#define MLXNOTE_MAX_BUSY_NS 1e9 /* 1 s: a probe a second at most on a busy machine */
#define MLXNOTE_CLASSES 12

/* A library's thread setter and what it learned. `sticky`: the count set stays set (OpenBLAS's
 * is global); oneDNN's OpenMP count is the calling thread's, so it is set on every call. */
struct backend {
    set_threads_fn set;
    int sticky, current;
    double rate1[MLXNOTE_CLASSES]; /* multiply-adds per ns on one thread */
};
static struct backend openblas = {NULL, 1, -1, {0}}, onednn = {NULL, 0, -1, {0}};
static int mlxnote_max_threads = 1, mlxnote_adaptive;
static unsigned long long mlxnote_multi_calls, mlxnote_busy_events;

/* Single-threaded until `until` (ns, CLOCK_MONOTONIC); `span`: the next back-off's length. */
struct backoff {
    double until, span;
};
static struct backoff mlxnote_busy = {0.0, MLXNOTE_BUSY_NS};

/* A GEMM shape's state: its own back-off, and whether it ever ran faster on threads. */
#define MLXNOTE_SHAPES 64
struct shape {
    int m, n, k, t;
    struct backoff off;
    int threaded_well;
};
static struct shape mlxnote_shapes[MLXNOTE_SHAPES];

static struct shape *shape_of(int m, int n, int k, int t) {
    unsigned h = (unsigned)m * 2654435761u ^ (unsigned)n * 40503u ^ (unsigned)k * 2246822519u ^
                 (unsigned)t * 97u;
    struct shape *s = &mlxnote_shapes[(h ^ (h >> 15)) % MLXNOTE_SHAPES];
    if (s->off.span == 0.0 || s->m != m || s->n != n || s->k != k || s->t != t) {
        struct shape fresh = {m, n, k, t, {0.0, MLXNOTE_BUSY_NS}, 0};
        *s = fresh;
    }
    return s;
}

static double now_ns(void);

/* Nanoseconds this OpenBLAS shape (t: TRANS_KEY) stays on one thread: the machine's busy
 * state, and the shape's own (tests). */
void mlxnote_shim_single_ns(int m, int n, int k, int t, double *machine, double *shape) {
    double now = now_ns();
    double a = mlxnote_busy.until - now, b = shape_of(m, n, k, t)->off.until - now;
    *machine = a > 0.0 ? a : 0.0;
    *shape = b > 0.0 ? b : 0.0;
}

void mlxnote_shim_threads(void *setter, int n) {
    openblas.set = (set_threads_fn)setter;
    openblas.current = -1;
    mlxnote_max_threads = n > 0 ? n : 1;
    mlxnote_adaptive = setter != NULL && mlxnote_max_threads > 1;
}

/* Calls run multi-threaded so far, and how often a busy machine was detected. */
unsigned long long mlxnote_shim_multi_calls(void) { return mlxnote_multi_calls; }
unsigned long long mlxnote_shim_busy_events(void) { return mlxnote_busy_events; }

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int size_class(double macs) {
    int c = 0;
    for (double v = macs / MLXNOTE_MIN_MULTI; v >= 4.0 && c < MLXNOTE_CLASSES - 1; v /= 4.0) c++;
    return c;
}

static void use_threads(struct backend *b, int n) {
    if (!b->sticky || n != b->current) {
        b->set(n);
        b->current = n;
    }
}

/* Before a call: how many threads it gets (0: leave the library's count alone, untimed);
 * multi == 0: one thread at most (a shape threads do not speed up). */
static int plan(struct backend *b, double macs, int multi, struct shape *s) {
    if (b->set == NULL) return 0;
    if (!mlxnote_adaptive) {
        if (!b->sticky) b->set(multi ? mlxnote_max_threads : 1);
        return 0;
    }
    int n = 1;
    if (multi && macs >= MLXNOTE_MIN_MULTI && b->rate1[size_class(macs)] > 0.0) {
        double now = now_ns();
        if (now >= mlxnote_busy.until && now >= s->off.until) n = mlxnote_max_threads;
    }
    use_threads(b, n);
    return n;
}

static void back_off(struct backoff *o) {
    o->until = now_ns() + o->span;
    if (o->span < MLXNOTE_MAX_BUSY_NS) o->span *= 2;
}

/* After a call of `macs` multiply-adds of shape `s` that took `ns` on `n` threads. */
static void learn(struct backend *b, double macs, int n, double ns, struct shape *s) {
    if (macs < MLXNOTE_MIN_MULTI || ns <= 0.0) return;
    double *rate = &b->rate1[size_class(macs)];
    if (n == 1) {
        double r = macs / ns;
        *rate = *rate > 0.0 ? 0.8 * *rate + 0.2 * r : r;
    } else {
        mlxnote_multi_calls++;
        if (ns > macs / *rate) { /* slower than one thread */
            back_off(&s->off);
            if (s->threaded_well) { /* a shape threads did speed up: the machine is busy */
                mlxnote_busy_events++;
                back_off(&mlxnote_busy);
            }
        } else {
            s->threaded_well = 1;
            s->off.span = MLXNOTE_BUSY_NS;
            mlxnote_busy.span = MLXNOTE_BUSY_NS;
        }
    }
}

/* What the shim learns from an OpenBLAS call of this shape that took `ns` on `threads`
 * threads, without making it (tests of the policy). */
void mlxnote_shim_observe(int m, int n, int k, int t, int threads, double ns) {
    learn(&openblas, (double)m * n * k, threads, ns, shape_of(m, n, k, t));
}

/* t: the transposes (and 4 for oneDNN's calls), a part of the shape's key. */
#define TIMED(b, macs, multi, m, n, k, t, call)                                                 \
    do {                                                                                        \
        struct shape *s_ = shape_of(m, n, k, t);                                                \
        int n_ = plan(b, macs, multi, s_);                                                      \
        if (n_ == 0) {                                                                          \
            call;                                                                               \
        } else {                                                                                \
            double t0_ = now_ns();                                                              \
            call;                                                                               \
            learn(b, macs, n_, now_ns() - t0_, s_);                                             \
        }                                                                                       \
    } while (0)

/* oneDNN. libdnnl's dnnl_sgemm (row-major, 64-bit sizes, OpenMP threads) is faster than
 * OpenBLAS's sgemm on this kind of CPU for the mid-sized products of dense, attention and
 * recurrent layers (benchmarks/bench_gemm.py). mlxnote_shim_dnnl(sgemm, omp_set_num_threads,
 * route) binds it; route MLXNOTE_ROUTE_AUTO sends a call to it when dnnl_wins() (measured
 * thresholds), MLXNOTE_ROUTE_ALL every call (tests), MLXNOTE_ROUTE_OFF none. A call oneDNN
 * refuses (a status other than success: bad sizes or leading dimensions) goes to OpenBLAS,
 * which reports it as BLAS does. A forked child keeps every call on OpenBLAS: GNU OpenMP's
 * worker threads are not copied by fork, and its next parallel region waits for them
 * forever (measured: a child's first 512^3 GEMM hung); OpenBLAS restarts its threads. */
#include <pthread.h>

typedef int (*dnnl_sgemm_fn)(char, char, long long, long long, long long, float, const float *,
                             long long, const float *, long long, float, float *, long long);
enum { MLXNOTE_ROUTE_OFF = 0, MLXNOTE_ROUTE_AUTO = 1, MLXNOTE_ROUTE_ALL = 2 };
enum { CBLAS_COL_MAJOR = 102, CBLAS_NO_TRANS = 111 };
#define TRANS_KEY(ta, tb) (2 * ((ta) != CBLAS_NO_TRANS) + ((tb) != CBLAS_NO_TRANS))
static dnnl_sgemm_fn mlxnote_dnnl_sgemm;
static int mlxnote_route;
static int mlxnote_forked;
static unsigned long long mlxnote_dnnl_calls;

static void dnnl_off_in_child(void) {
    mlxnote_forked = 1;
    mlxnote_route = MLXNOTE_ROUTE_OFF;
}

/* 1 in a process forked after oneDNN was bound (its route then stays off). */
int mlxnote_shim_dnnl_forked(void) { return mlxnote_forked; }

/* Returns the previous route; sgemm == NULL keeps the bound function (changes the route). */
int mlxnote_shim_dnnl(void *sgemm, void *omp_set_num_threads, int route) {
    int old = mlxnote_dnnl_sgemm == NULL ? -1 : mlxnote_route;
    if (sgemm != NULL) {
        if (mlxnote_dnnl_sgemm == NULL) pthread_atfork(NULL, NULL, dnnl_off_in_child);
        mlxnote_dnnl_sgemm = (dnnl_sgemm_fn)sgemm;
        onednn.set = (set_threads_fn)omp_set_num_threads;
    }
    if (mlxnote_dnnl_sgemm != NULL && !mlxnote_forked) mlxnote_route = route;
    return old;
}

/* Number of cblas_sgemm calls oneDNN computed so far. */
unsigned long long mlxnote_dnnl_gemm_calls(void) {
    return __atomic_load_n(&mlxnote_dnnl_calls, __ATOMIC_RELAXED);
}

/* The call as oneDNN's row-major problem: column-major C = A B is row-major C^T = B^T A^T,
 * so the operands, their transposes and M, N swap. */
struct rowmajor {
    char ta, tb;
    long long m, n, k, lda, ldb;
    const float *a, *b;
};

static struct rowmajor as_rowmajor(int order, int ta, int tb, blasint m, blasint n, blasint k,
                                   const float *a, blasint lda, const float *b, blasint ldb) {
    char fa = ta == CBLAS_NO_TRANS ? 'N' : 'T', fb = tb == CBLAS_NO_TRANS ? 'N' : 'T';
    struct rowmajor r = {fa, fb, m, n, k, lda, ldb, a, b};
    if (order == CBLAS_COL_MAJOR) {
        struct rowmajor t = {fb, fa, n, m, k, ldb, lda, b, a};
        r = t;
    }
    return r;
}

/* Measured on one thread (AVX-512 Zen; benchmarks/bench_gemm.py): oneDNN's kernels run about
 * 2x OpenBLAS's (190-210 against 85-106 GFLOP/s) from 32x32x32 on, every transpose; below,
 * its call costs more (0.45 against 0.11 us at 4x4x4, 0.59 against 0.27 at 16^3). Except
 * with B transposed, fewer than 128 rows of A and K >= 512, where N <= 64 or A is
 * transposed too: oneDNN 22-70 against OpenBLAS 72-100 (32x64x1024 NT: 40 vs 86; 32x256x1024
 * TT: 38 vs 91; 32x128x1024 NT still 114 vs 88). The large calls should all go to one
 * library: two libraries' threads spinning after their calls in turn stalled each other's
 * next call (milliseconds). */
#define MLXNOTE_DNNL_MIN (32 * 32 * 32)
static int dnnl_wins(const struct rowmajor *r, double macs) {
    if (macs < MLXNOTE_DNNL_MIN) return 0;
    return !(r->tb == 'T' && r->m < 128 && r->k >= 512 && (r->n <= 64 || r->ta == 'T'));
}

/* With B transposed, fewer than 128 rows and K >= N oneDNN was slower on two threads than on
 * one (32x256x1024 NT: 71-73 against 112 GFLOP/s; 32x512x512: 124 against 155): one thread. */
static int dnnl_multi(const struct rowmajor *r) {
    return !(r->tb == 'T' && r->m < 128 && r->k >= r->n);
}

/* The smallest call (multiply-adds) the automatic route sends to oneDNN. */
long long mlxnote_shim_dnnl_min(void) { return MLXNOTE_DNNL_MIN; }

void cblas_sgemm(int order, int ta, int tb, blasint m, blasint n, blasint k, float alpha,
                 const float *a, blasint lda, const float *b, blasint ldb, float beta, float *c,
                 blasint ldc) {
    COUNT();
    double macs = (double)m * n * k;
    int route = mlxnote_route;
    if (route != MLXNOTE_ROUTE_OFF && macs > 0) {
        struct rowmajor r = as_rowmajor(order, ta, tb, m, n, k, a, lda, b, ldb);
        if (route == MLXNOTE_ROUTE_ALL || dnnl_wins(&r, macs)) {
            int status = 0;
            TIMED(&onednn, macs, dnnl_multi(&r), m, n, k, 4 + TRANS_KEY(ta, tb),
                  status = mlxnote_dnnl_sgemm(r.ta, r.tb, r.m, r.n, r.k, alpha, r.a, r.lda,
                                              r.b, r.ldb, beta, c, ldc));
            if (status == 0) {
                __atomic_fetch_add(&mlxnote_dnnl_calls, 1ULL, __ATOMIC_RELAXED);
                return;
            }
        }
    }
    TIMED(&openblas, macs, 1, m, n, k, TRANS_KEY(ta, tb),
          ((sgemm_fn)mlxnote_p_cblas_sgemm)(order, ta, tb, m, n, k, alpha, a, lda, b, ldb,
                                            beta, c, ldc));
}

/* One thread, for callers that run several GEMMs side by side on their own threads
 * (mlxnote's fused attention: one head per thread). oneDNN's OpenMP count is the calling
 * thread's; OpenBLAS's is global, so it can be set to one only while the shim chooses the
 * count per call (adaptive threads: the next ordinary call sets it again).
 * mlxnote_sgemm_serial_ok() says whether the call is serial: otherwise a caller must not run
 * GEMMs side by side. */
int mlxnote_sgemm_serial_ok(void) {
    return (mlxnote_dnnl_sgemm != NULL && mlxnote_route != MLXNOTE_ROUTE_OFF) ||
           (openblas.set != NULL && mlxnote_adaptive);
}

void mlxnote_sgemm_serial(int order, int ta, int tb, blasint m, blasint n, blasint k,
                          float alpha, const float *a, blasint lda, const float *b,
                          blasint ldb, float beta, float *c, blasint ldc) {
    COUNT();
    double macs = (double)m * n * k;
    if (mlxnote_route != MLXNOTE_ROUTE_OFF && mlxnote_dnnl_sgemm != NULL && macs > 0) {
        struct rowmajor r = as_rowmajor(order, ta, tb, m, n, k, a, lda, b, ldb);
        onednn.set(1);
        if (mlxnote_dnnl_sgemm(r.ta, r.tb, r.m, r.n, r.k, alpha, r.a, r.lda, r.b, r.ldb, beta,
                               c, ldc) == 0) {
            __atomic_fetch_add(&mlxnote_dnnl_calls, 1ULL, __ATOMIC_RELAXED);
            return;
        }
    }
    if (openblas.set != NULL && mlxnote_adaptive) use_threads(&openblas, 1);
    ((sgemm_fn)mlxnote_p_cblas_sgemm)(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c,
                                      ldc);
}

void cblas_dgemm(int order, int ta, int tb, blasint m, blasint n, blasint k, double alpha,
                 const double *a, blasint lda, const double *b, blasint ldb, double beta,
                 double *c, blasint ldc) {
    COUNT();
    TIMED(&openblas, (double)m * n * k, 1, m, n, k, 8 + TRANS_KEY(ta, tb),
          ((dgemm_fn)mlxnote_p_cblas_dgemm)(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta,
                                            c, ldc));
}

void cblas_cgemm(int order, int ta, int tb, blasint m, blasint n, blasint k, const void *alpha,
                 const void *a, blasint lda, const void *b, blasint ldb, const void *beta,
                 void *c, blasint ldc) {
    COUNT();
    ((cgemm_fn)mlxnote_p_cblas_cgemm)(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c,
                                      ldc);
}

#if defined(__x86_64__)
/* endbr64 is a no-op on CPUs without CET. */
#define JUMP(name)                                                                              \
    __asm__(".text\n.globl " #name "\n.type " #name ",@function\n.p2align 4\n" #name ":\n"      \
            "\tendbr64\n\tjmp *mlxnote_p_" #name "(%rip)\n.size " #name ",.-" #name "\n");
MLXNOTE_LAPACK(JUMP)
#elif defined(__aarch64__)
/* hint #34 is `bti c` (a no-op without BTI); x16 is the intra-procedure-call scratch register
 * that PLT stubs use too. */
#define JUMP(name)                                                                              \
    __asm__(".text\n.globl " #name "\n.type " #name ",%function\n.p2align 4\n" #name ":\n"      \
            "\thint #34\n\tadrp x16, mlxnote_p_" #name "\n"                                     \
            "\tldr x16, [x16, :lo12:mlxnote_p_" #name "]\n\tbr x16\n"                          \
            ".size " #name ",.-" #name "\n");
MLXNOTE_LAPACK(JUMP)
#endif
