// Row kernels of the masked softmax (softmax.h). A row has n logits; `keep` (null: keep
// all) says which are attended and `add` (null: none) what is added to them.
#pragma once

#include <cstdint>

namespace mlxnote::kernels {

// Per row: where the mask of logit j is, and whether keys past `last` are masked.
struct RowMask {
  const uint8_t* keep = nullptr;  // boolean mask (stride `step`)
  const float* add = nullptr;     // additive mask (stride `step`)
  int64_t step = 1;
  int last = -1;                  // causal: keys j > last are masked (-1: none)
  float low = 0.0f;               // the value of a causal-masked logit
};

void softmax_row(const float* x, float* y, int n, const RowMask& m);
// In place, from the logits in y: the unnormalized weights exp(y - max) (the softmax times
// sum); stats gets {row max, 1 / sum}.
void softmax_exp_row(float* y, int n, const RowMask& m, float* stats);
// The softmax from the same logits and the stats softmax_exp_row gave: exp(y - max) / sum,
// its exponentials bit for bit.
void softmax_row_again(float* y, int n, const RowMask& m, const float* stats);
// dx -= y * sum(dx): a softmax gradient's rounding along the ones vector (to which the exact
// one is orthogonal: the softmax ignores a shift of its row) removed, to first order.
void center_grad_row(const float* y, float* dx, int n);
// dx may be g.
void softmax_grad_row(const float* y, const float* g, float* dx, int n, const RowMask& m);

}  // namespace mlxnote::kernels
