// Gate arithmetic of one batch row of one step (see rnn.h for the layouts), vectorized over
// the hidden units and compiled per ISA.
#include "rnn_kernels.h"

#include "common.h"
#include "fastmath.h"

namespace mlxnote::kernels {

MLXNOTE_CLONES
void add_into(float* y, const float* x, int n) {
  for (int j = 0; j < n; ++j) {
    y[j] += x[j];
  }
}

MLXNOTE_CLONES
void sigmoid_inplace(float* a, int n) {
  for (int j = 0; j < n; ++j) {
    a[j] = fast::sigmoid(a[j]);
  }
}

MLXNOTE_CLONES
void tanh_inplace(float* a, int n) {
  for (int j = 0; j < n; ++j) {
    a[j] = fast::tanh(a[j]);
  }
}

MLXNOTE_CLONES
void lstm_cell(const float* __restrict a, const float* __restrict c_prev, float* __restrict c,
               float* __restrict h, int n) {
  const float *i = a, *f = a + n, *o = a + 2 * n, *cc = a + 3 * n;
  for (int j = 0; j < n; ++j) {
    const float cn = f[j] * c_prev[j] + i[j] * cc[j];
    c[j] = cn;
    h[j] = o[j] * fast::tanh(cn);
  }
}

void lstm_forward(float* a, const float* c_prev, float* c, float* h, int n) {
  sigmoid_inplace(a, 3 * n);
  tanh_inplace(a + 3 * n, n);
  lstm_cell(a, c_prev, c, h, n);
}

MLXNOTE_CLONES
void lstm_backward(const float* __restrict a, const float* __restrict c,
                   const float* __restrict c_prev, const float* __restrict dh,
                   float* __restrict dc, float* __restrict dg, int n) {
  const float *i = a, *f = a + n, *o = a + 2 * n, *cc = a + 3 * n;
  float *di = dg, *df = dg + n, *d_o = dg + 2 * n, *dcc = dg + 3 * n;
  for (int j = 0; j < n; ++j) {
    const float tc = fast::tanh(c[j]);
    const float dct = dc[j] + dh[j] * o[j] * (1.0f - tc * tc);
    di[j] = dct * cc[j] * i[j] * (1.0f - i[j]);
    df[j] = dct * c_prev[j] * f[j] * (1.0f - f[j]);
    d_o[j] = dh[j] * tc * o[j] * (1.0f - o[j]);
    dcc[j] = dct * i[j] * (1.0f - cc[j] * cc[j]);
    dc[j] = dct * f[j];
  }
}

MLXNOTE_CLONES
void gru_reset(const float* __restrict r, const float* __restrict h_prev, float* __restrict rh,
               int n) {
  for (int j = 0; j < n; ++j) {
    rh[j] = r[j] * h_prev[j];
  }
}

void gru_gates(float* a, const float* h_prev, float* rh, int n) {
  sigmoid_inplace(a, 2 * n);
  gru_reset(a, h_prev, rh, n);
}

MLXNOTE_CLONES
void gru_output(float* __restrict a, const float* __restrict h_prev, float* __restrict h,
                int n) {
  const float* z = a + n;
  float* hh = a + 2 * n;
  for (int j = 0; j < n; ++j) {
    hh[j] = fast::tanh(hh[j]);
    h[j] = z[j] * h_prev[j] + (1.0f - z[j]) * hh[j];  // Keras's order of operations
  }
}

MLXNOTE_CLONES
void gru_backward_candidate(const float* a, const float* h_prev, const float* dh, float* dg,
                            float* dz, int n) {
  for (int j = 0; j < n; ++j) {
    const float z = a[n + j], hh = a[2 * n + j];
    dg[2 * n + j] = dh[j] * (1.0f - z) * (1.0f - hh * hh);
    dz[j] = dh[j] * (h_prev[j] - hh);
  }
}

MLXNOTE_CLONES
void gru_backward_gates(const float* __restrict a, const float* __restrict h_prev,
                        const float* __restrict dz, const float* __restrict drh,
                        float* __restrict dg, float* __restrict dh, int n) {
  for (int j = 0; j < n; ++j) {
    const float r = a[j], z = a[n + j];
    dg[j] = drh[j] * h_prev[j] * r * (1.0f - r);
    dg[n + j] = dz[j] * z * (1.0f - z);
    dh[j] = dh[j] * z + drh[j] * r;
  }
}

MLXNOTE_CLONES
void gru_after_forward(float* __restrict g, const float* __restrict u,
                       const float* __restrict h_prev, float* __restrict h,
                       float* __restrict uh, int n) {
  for (int j = 0; j < 2 * n; ++j) {
    g[j] += u[j];  // Keras's order: the input projection plus (h @ U + b_U)
  }
  sigmoid_inplace(g, 2 * n);
  const float *r = g, *z = g + n, *u_h = u + 2 * n;
  float* hh = g + 2 * n;
  for (int j = 0; j < n; ++j) {
    hh[j] = fast::tanh(hh[j] + r[j] * u_h[j]);
    h[j] = z[j] * h_prev[j] + (1.0f - z[j]) * hh[j];
    uh[j] = u_h[j];
  }
}

MLXNOTE_CLONES
void gru_after_backward(const float* __restrict g, const float* __restrict uh,
                        const float* __restrict h_prev, float* __restrict dh,
                        float* __restrict dg, float* __restrict du, int n) {
  const float *r = g, *z = g + n, *hh = g + 2 * n;
  for (int j = 0; j < n; ++j) {
    const float db = dh[j] * (1.0f - z[j]) * (1.0f - hh[j] * hh[j]);
    const float dz = dh[j] * (h_prev[j] - hh[j]);
    const float dar = db * uh[j] * r[j] * (1.0f - r[j]);
    const float daz = dz * z[j] * (1.0f - z[j]);
    dg[j] = du[j] = dar;
    dg[n + j] = du[n + j] = daz;
    dg[2 * n + j] = db;
    du[2 * n + j] = db * r[j];
    dh[j] = dh[j] * z[j];
  }
}

void rnn_forward(float* h, int n) {
  tanh_inplace(h, n);
}

MLXNOTE_CLONES
void rnn_backward(const float* h, const float* dh, float* dz, int n) {
  for (int j = 0; j < n; ++j) {
    dz[j] = dh[j] * (1.0f - h[j] * h[j]);
  }
}

}  // namespace mlxnote::kernels
