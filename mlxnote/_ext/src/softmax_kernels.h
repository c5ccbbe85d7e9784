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
void softmax_grad_row(const float* y, const float* g, float* dx, int n, const RowMask& m);

}  // namespace mlxnote::kernels
