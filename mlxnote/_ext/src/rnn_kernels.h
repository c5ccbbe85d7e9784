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

// Simple RNN: h = tanh(h) in place; dz = dh * (1 - h^2).
void rnn_forward(float* h, int n);
void rnn_backward(const float* h, const float* dh, float* dz, int n);

}  // namespace mlxnote::kernels
