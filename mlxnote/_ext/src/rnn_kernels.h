// Gate arithmetic of one batch row of one recurrent step, for mlxnote's RnnScan (rnn.h has
// the layouts). n is the hidden size; gate rows hold the k gate blocks of one (b, t).
#pragma once

namespace mlxnote::kernels {

// y += x (n values).
void add_into(float* y, const float* x, int n);

// LSTM: a holds the pre-activations i, f, o, c and is overwritten with the activated gates;
// writes the new cell c and hidden state h.
void lstm_forward(float* a, const float* c_prev, float* c, float* h, int n);
// From the activated gates a, the cell c and the previous cell: writes the gate
// pre-activation gradients dg; dc is the cell gradient in, the previous cell's out.
void lstm_backward(const float* a, const float* c, const float* c_prev, const float* dh,
                   float* dc, float* dg, int n);

// GRU: activates r, z in place and writes r * h_prev.
void gru_gates(float* a, const float* h_prev, float* rh, int n);
// Activates the candidate in place (a's third block) and writes h.
void gru_output(float* a, const float* h_prev, float* h, int n);
// The candidate's pre-activation gradient (dg's third block) and dz.
void gru_backward_candidate(const float* a, const float* h_prev, const float* dh, float* dg,
                            float* dz, int n);
// r and z pre-activation gradients (dg's first two blocks) from dz and drh = d(r * h_prev);
// dh (the state gradient in) becomes the direct part of the previous state's gradient.
void gru_backward_gates(const float* a, const float* h_prev, const float* dz, const float* drh,
                        float* dg, float* dh, int n);

// Reset-after GRU (Keras 3's default): g holds the input projections [x_r, x_z, x_h] and
// becomes [r, z, hh]; u = h_prev @ U + b_U (all three blocks); writes h and u's h block.
void gru_after_forward(float* g, const float* u, const float* h_prev, float* h, float* uh,
                       int n);
// From the activated gates g and u's h block: the input-projection gradient dg, the
// gradient du of u (the recurrent product's), and dh (in) becomes its direct part dh * z.
void gru_after_backward(const float* g, const float* uh, const float* h_prev, float* dh,
                        float* dg, float* du, int n);

// Simple RNN: h = tanh(h) in place; dz = dh * (1 - h^2).
void rnn_forward(float* h, int n);
void rnn_backward(const float* h, const float* dh, float* dz, int n);

}  // namespace mlxnote::kernels
