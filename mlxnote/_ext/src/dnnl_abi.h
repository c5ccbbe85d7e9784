// The C interface between mlxnote's extension (_core, which never links oneDNN) and
// libmlxnote_dnnl.so (dnnl_impl.cpp, linked against oneDNN's libdnnl), which _core loads
// at run time with dlopen when oneDNN is installed (the `cpu` extra on Linux x86-64).
#pragma once

#include <cstdint>

extern "C" {

// An N-d (1 to 3) channels-last convolution, as mx.conv_general defines it without input
// dilation: x (n, *l, c), w (o, *k, c / groups), y (n, *out, o), out[j] = (l[j] + lo[j] +
// hi[j] - (k[j] - 1) * d[j] - 1) / s[j] + 1.
struct MlxnoteDnnlConv {
  int nd;
  int bias;  // forward only: y = conv(x, w) + bias, the bias added by oneDNN
  int64_t n, c, o, groups;
  int64_t l[3], k[3], out[3], s[3], d[3], lo[3], hi[3];
};

// What mlxnote_dnnl_conv computes: y = conv(x, w); dx = the input gradient from (dy, w);
// dw = the weight gradient from (x, dy).
enum MlxnoteDnnlKind { MLXNOTE_DNNL_FORWARD = 0, MLXNOTE_DNNL_BACKWARD_DATA = 1,
                       MLXNOTE_DNNL_BACKWARD_WEIGHTS = 2 };

// Runs kind on (a, b) (and the (o,) bias when p->bias) into out with `threads` OpenMP
// threads (primitives cached per shape). Returns 0, or nonzero with a message in err.
// Exported as mlxnote_dnnl_conv_run.
typedef int (*MlxnoteDnnlConvFn)(int kind, const MlxnoteDnnlConv* p, const float* a,
                                 const float* b, const float* bias, float* out, int threads,
                                 char* err, int errlen);

// The library's version string ("3.2.0 ..."), for `python -m mlxnote info`.
typedef const char* (*MlxnoteDnnlVersionFn)();
}
