#include "rnn.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"

#include "blas.h"
#include "pool.h"
#include "rnn_kernels.h"

namespace mlxnote {

namespace {

int blocks(RnnKind kind) {
  return kind == RnnKind::Lstm ? 4 : kind == RnnKind::Rnn ? 1 : 3;
}

const char* kind_name(RnnKind kind) {
  switch (kind) {
    case RnnKind::Lstm:
      return "lstm";
    case RnnKind::Gru:
      return "gru";
    case RnnKind::GruAfter:
      return "reset-after gru";
    default:
      return "rnn";
  }
}

// The optional input after h0: c0 (LSTM) or b_U (reset-after GRU).
bool has_state(RnnKind kind) {
  return kind == RnnKind::Lstm || kind == RnnKind::GruAfter;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("mlxnote rnn_scan: " + what);
}

// The gate arithmetic of one step over the batch rows: on the calling thread when the step
// is small (a pool wake-up costs more than it saves), else split over mlxnote's pool.
template <class F>
void each_row(int b, int64_t row_work, F fn) {
  constexpr int64_t kMinWork = 16384;  // floats per chunk worth a thread
  auto& pool = ThreadPool::instance();
  if (pool.threads() == 1 || b * row_work < 2 * kMinWork) {
    for (int r = 0; r < b; ++r) {
      fn(r);
    }
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kMinWork / std::max<int64_t>(1, row_work));
  pool.parallel_for(b, grain, [&](int64_t lo, int64_t hi, int) {
    for (int64_t r = lo; r < hi; ++r) {
      fn(static_cast<int>(r));
    }
  });
}

// A (B, T, n) sequence.
struct Seq {
  float* p = nullptr;
  int t = 0, n = 0;
  float* at(int b, int s) const {
    return p + (static_cast<int64_t>(b) * t + s) * n;
  }
};

// A state: its value before step 0 (B, H) and after each step (B, T, H).
struct State {
  const float* first = nullptr;
  Seq seq;
  const float* prev(int b, int s) const {
    return s ? seq.at(b, s - 1) : first + static_cast<int64_t>(b) * seq.n;
  }
  // The (B, H) matrix of the states before step s, and its leading dimension.
  const float* prev_rows(int s) const {
    return s ? seq.at(0, s - 1) : first;
  }
  int prev_ld(int s) const {
    return s ? seq.t * seq.n : seq.n;
  }
};

// (B*T, H): row (b, s) is the state before step s.
std::vector<float> previous_states(const State& st, int b) {
  const int t = st.seq.t, h = st.seq.n;
  std::vector<float> out(static_cast<size_t>(b) * t * h);
  for (int r = 0; r < b; ++r) {
    float* dst = out.data() + static_cast<size_t>(r) * t * h;
    std::memcpy(dst, st.first + static_cast<size_t>(r) * h, sizeof(float) * h);
    if (t > 1) {
      std::memcpy(dst + h, st.seq.at(r, 0), sizeof(float) * static_cast<size_t>(t - 1) * h);
    }
  }
  return out;
}

// Whether step s of row b runs (no mask: all do).
struct Steps {
  const uint8_t* mask = nullptr;
  int t = 0;
  bool on(int b, int s) const {
    return mask == nullptr || mask[static_cast<int64_t>(b) * t + s];
  }
};

void copy_row(float* dst, const float* src, int n) {
  std::memcpy(dst, src, sizeof(float) * n);
}

// ---- forward ---------------------------------------------------------------------------
void forward(const RnnParams& p, const std::vector<const float*>& in,
             const std::vector<float*>& out, const uint8_t* mask) {
  const int b = p.b, t = p.t, h = p.h, kh = blocks(p.kind) * h;
  const float* xp = in[0];
  const float* wh = in[1];
  const Steps steps{mask, t};
  Seq hseq{out[0], t, h};
  State hs{in[2], hseq};
  // A skipped step carries the states over.
  auto carry = [&](int r, int s, const State& st) {
    copy_row(st.seq.at(r, s), st.prev(r, s), h);
  };
  if (p.kind == RnnKind::Rnn) {
    std::memcpy(hseq.p, xp, sizeof(float) * static_cast<size_t>(b) * t * h);
    for (int s = 0; s < t; ++s) {
      blas::sgemm(false, false, b, h, h, 1.0f, hs.prev_rows(s), hs.prev_ld(s), wh, h, 1.0f,
                  hseq.at(0, s), t * h);
      each_row(b, h, [&](int r) {
        steps.on(r, s) ? kernels::rnn_forward(hseq.at(r, s), h) : carry(r, s, hs);
      });
    }
    return;
  }
  if (p.kind == RnnKind::Lstm) {
    Seq cseq{out[1], t, h}, gates{out[2], t, kh};
    State cs{in[3], cseq};
    std::memcpy(gates.p, xp, sizeof(float) * static_cast<size_t>(b) * t * kh);
    for (int s = 0; s < t; ++s) {
      blas::sgemm(false, false, b, kh, h, 1.0f, hs.prev_rows(s), hs.prev_ld(s), wh, kh, 1.0f,
                  gates.at(0, s), t * kh);
      each_row(b, kh, [&](int r) {
        kernels::lstm_forward(gates.at(r, s), cs.prev(r, s), cseq.at(r, s), hseq.at(r, s), h);
        if (!steps.on(r, s)) {
          carry(r, s, hs);
          carry(r, s, cs);
        }
      });
    }
    return;
  }
  Seq gates{out[1], t, kh}, saved{out[2], t, h};
  std::memcpy(gates.p, xp, sizeof(float) * static_cast<size_t>(b) * t * kh);
  if (p.kind == RnnKind::GruAfter) {
    const float* bu = in[3];
    std::vector<float> u(static_cast<size_t>(b) * kh);
    for (int s = 0; s < t; ++s) {
      for (int r = 0; r < b; ++r) {
        copy_row(u.data() + static_cast<int64_t>(r) * kh, bu, kh);
      }
      blas::sgemm(false, false, b, kh, h, 1.0f, hs.prev_rows(s), hs.prev_ld(s), wh, kh, 1.0f,
                  u.data(), kh);
      each_row(b, kh, [&](int r) {
        kernels::gru_after_forward(gates.at(r, s), u.data() + static_cast<int64_t>(r) * kh,
                                   hs.prev(r, s), hseq.at(r, s), saved.at(r, s), h);
        if (!steps.on(r, s)) {
          carry(r, s, hs);
        }
      });
    }
    return;
  }
  for (int s = 0; s < t; ++s) {
    blas::sgemm(false, false, b, 2 * h, h, 1.0f, hs.prev_rows(s), hs.prev_ld(s), wh, kh, 1.0f,
                gates.at(0, s), t * kh);
    each_row(b, 2 * h, [&](int r) {
      kernels::gru_gates(gates.at(r, s), hs.prev(r, s), saved.at(r, s), h);
    });
    blas::sgemm(false, false, b, h, h, 1.0f, saved.at(0, s), t * h, wh + 2 * h, kh, 1.0f,
                gates.at(0, s) + 2 * h, t * kh);
    each_row(b, 2 * h, [&](int r) {
      kernels::gru_output(gates.at(r, s), hs.prev(r, s), hseq.at(r, s), h);
      if (!steps.on(r, s)) {
        carry(r, s, hs);
      }
    });
  }
}

// ---- backward --------------------------------------------------------------------------
// ins: wh, h0, [c0], dhseq, [dcseq], hseq, [cseq], [gates], [rh or uh] (see rnn.h).
// outs: dxp, dwh, dh0, [dc0 or db_U].
void backward(const RnnParams& p, const std::vector<const float*>& in,
              const std::vector<float*>& out, const uint8_t* mask) {
  const int b = p.b, t = p.t, h = p.h, kh = blocks(p.kind) * h;
  const bool lstm = p.kind == RnnKind::Lstm, gru = p.kind == RnnKind::Gru;
  const bool after = p.kind == RnnKind::GruAfter;
  const Steps steps{mask, t};
  size_t i = 0;
  auto next = [&](int n) { return Seq{const_cast<float*>(in[i++]), t, n}; };
  const float* wh = in[i++];
  const float* h0 = in[i++];
  const float* c0 = lstm ? in[i++] : nullptr;
  const Seq dhseq = next(h);
  const Seq dcseq = lstm ? next(h) : Seq{};
  const State hs{h0, next(h)};
  const State cs = lstm ? State{c0, next(h)} : State{};
  const Seq gates = p.kind == RnnKind::Rnn ? Seq{} : next(kh);
  const Seq saved = gru || after ? next(h) : Seq{};

  Seq dxp{out[0], t, kh};
  float* dwh = out[1];
  float* dh = out[2];  // the running state gradient; dh0 at the end
  float* dc = lstm ? out[3] : nullptr;
  std::fill(dh, dh + static_cast<size_t>(b) * h, 0.0f);
  if (lstm) {
    std::fill(dc, dc + static_cast<size_t>(b) * h, 0.0f);
  }
  // The recurrent kernel transposed, (kh, h), once: each step's dh += dgates wh^T is then a
  // product with no transposed operand, which oneDNN runs 3-4x faster at these shapes
  // (32x256x1024: 99-115 against 427-431 us; docs/performance.md).
  std::vector<float> wt(static_cast<size_t>(kh) * h);
  for (int r = 0; r < h; ++r) {
    for (int j = 0; j < kh; ++j) {
      wt[static_cast<size_t>(j) * h + r] = wh[static_cast<size_t>(r) * kh + j];
    }
  }
  std::vector<float> dz, drh, du;
  if (gru) {
    dz.resize(static_cast<size_t>(b) * h);
    drh.resize(static_cast<size_t>(b) * h);
  }
  if (after) {
    du.resize(static_cast<size_t>(b) * t * kh);
  }
  const Seq dus{du.data(), t, kh};
  // Per step, each row's kernel leaves in dh the direct part of the previous state's
  // gradient (a skipped step: all of it, and no gate gradient); one GEMM adds the part
  // through the recurrent kernel.
  auto skip = [&](int r, int s) {
    std::fill(dxp.at(r, s), dxp.at(r, s) + kh, 0.0f);
    if (after) {
      std::fill(dus.at(r, s), dus.at(r, s) + kh, 0.0f);
    }
  };
  auto row_dh = [&](int r) { return dh + static_cast<int64_t>(r) * h; };
  for (int s = t - 1; s >= 0; --s) {
    if (p.kind == RnnKind::Rnn) {
      each_row(b, h, [&](int r) {
        kernels::add_into(row_dh(r), dhseq.at(r, s), h);
        if (!steps.on(r, s)) {
          return skip(r, s);
        }
        kernels::rnn_backward(hs.seq.at(r, s), row_dh(r), dxp.at(r, s), h);
        std::fill(row_dh(r), row_dh(r) + h, 0.0f);
      });
      blas::sgemm(false, false, b, h, h, 1.0f, dxp.at(0, s), t * kh, wt.data(), h, 1.0f, dh, h);
    } else if (lstm) {
      each_row(b, kh, [&](int r) {
        float* dcr = dc + static_cast<int64_t>(r) * h;
        kernels::add_into(row_dh(r), dhseq.at(r, s), h);
        kernels::add_into(dcr, dcseq.at(r, s), h);
        if (!steps.on(r, s)) {
          return skip(r, s);
        }
        kernels::lstm_backward(gates.at(r, s), cs.seq.at(r, s), cs.prev(r, s), row_dh(r), dcr,
                               dxp.at(r, s), h);
        std::fill(row_dh(r), row_dh(r) + h, 0.0f);
      });
      blas::sgemm(false, false, b, h, kh, 1.0f, dxp.at(0, s), t * kh, wt.data(), h, 1.0f, dh, h);
    } else if (after) {
      each_row(b, kh, [&](int r) {
        kernels::add_into(row_dh(r), dhseq.at(r, s), h);
        if (!steps.on(r, s)) {
          return skip(r, s);
        }
        kernels::gru_after_backward(gates.at(r, s), saved.at(r, s), hs.prev(r, s), row_dh(r),
                                    dxp.at(r, s), dus.at(r, s), h);
      });
      blas::sgemm(false, false, b, h, kh, 1.0f, dus.at(0, s), t * kh, wt.data(), h, 1.0f, dh, h);
    } else {
      each_row(b, h, [&](int r) {
        kernels::add_into(row_dh(r), dhseq.at(r, s), h);
        if (!steps.on(r, s)) {
          return skip(r, s);
        }
        kernels::gru_backward_candidate(gates.at(r, s), hs.prev(r, s), row_dh(r),
                                        dxp.at(r, s), dz.data() + static_cast<int64_t>(r) * h,
                                        h);
      });
      blas::sgemm(false, false, b, h, h, 1.0f, dxp.at(0, s) + 2 * h, t * kh,
                  wt.data() + static_cast<size_t>(2) * h * h, h, 0.0f, drh.data(), h);
      each_row(b, 2 * h, [&](int r) {
        if (steps.on(r, s)) {
          const int64_t o = static_cast<int64_t>(r) * h;
          kernels::gru_backward_gates(gates.at(r, s), hs.prev(r, s), dz.data() + o,
                                      drh.data() + o, dxp.at(r, s), dh + o, h);
        }
      });
      blas::sgemm(false, false, b, h, 2 * h, 1.0f, dxp.at(0, s), t * kh, wt.data(), h, 1.0f, dh,
                  h);
    }
  }
  // The recurrent kernel's gradient: one product over every step (cuDNN's way), not a
  // running sum of per-step products, in row blocks.
  const auto hprev = previous_states(hs, b);
  const int rows = b * t;
  if (gru) {
    blas::row_block_product(h, 2 * h, rows, hprev.data(), h, dxp.p, kh, dwh, kh);
    blas::row_block_product(h, h, rows, saved.p, h, dxp.p + 2 * h, kh, dwh + 2 * h, kh);
  } else {
    blas::row_block_product(h, kh, rows, hprev.data(), h, after ? dus.p : dxp.p, kh, dwh, kh);
  }
  if (after) {  // db_U: the column sums of du, in double (a long float32 chain loses bits)
    std::vector<double> sum(kh, 0.0);
    for (int r = 0; r < rows; ++r) {
      const float* row = dus.p + static_cast<int64_t>(r) * kh;
      for (int j = 0; j < kh; ++j) {
        sum[j] += row[j];
      }
    }
    for (int j = 0; j < kh; ++j) {
      out[3][j] = static_cast<float>(sum[j]);
    }
  }
}

}  // namespace

void RnnScan::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& encoder = mx::cpu::get_command_encoder(stream());
  const size_t dense = inputs.size() - (p_.masked ? 1 : 0);
  std::vector<const float*> in;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& a = inputs[i];
    if ((i < dense && a.dtype() != mx::float32) || !a.flags().row_contiguous) {
      fail("inputs must be row-contiguous float32 arrays (and a boolean mask)");
    }
    encoder.set_input_array(a);
    if (i < dense) {
      in.push_back(a.data<float>());
    }
  }
  const uint8_t* mask = p_.masked ? inputs.back().data<uint8_t>() : nullptr;
  std::vector<float*> out;
  for (auto& o : outputs) {
    o.set_data(mx::allocator::malloc(o.nbytes()));
    encoder.set_output_array(o);
    out.push_back(o.data<float>());
  }
  encoder.dispatch([p = p_, bwd = backward_, in = std::move(in), out = std::move(out), mask]() {
    if (bwd) {
      backward(p, in, out, mask);
    } else {
      forward(p, in, out, mask);
    }
  });
}

void RnnScan::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error("mlxnote rnn_scan: CPU only (GPUs use the MLX scan)");
}

std::vector<mx::Shape> RnnScan::output_shapes(const std::vector<mx::array>&) {
  const int kh = blocks(p_.kind) * p_.h;
  const mx::Shape seq{p_.b, p_.t, p_.h}, state{p_.b, p_.h}, gates{p_.b, p_.t, kh};
  if (backward_) {
    std::vector<mx::Shape> s{{p_.b, p_.t, kh}, {p_.h, kh}, state};
    if (p_.kind == RnnKind::Lstm) {
      s.push_back(state);
    } else if (p_.kind == RnnKind::GruAfter) {
      s.push_back({kh});
    }
    return s;
  }
  switch (p_.kind) {
    case RnnKind::Rnn:
      return {seq};
    case RnnKind::Lstm:
      return {seq, seq, gates};
    default:
      return {seq, gates, seq};
  }
}

std::vector<mx::array> RnnScan::vjp(const std::vector<mx::array>& primals,
                                    const std::vector<mx::array>& cotangents,
                                    const std::vector<int>& argnums,
                                    const std::vector<mx::array>& outputs) {
  if (backward_) {
    fail(std::string("second-order gradients of the ") + kind_name(p_.kind) +
         " kernel are not implemented (MLXNOTE_EXT=0 runs the MLX scan, which has them)");
  }
  // The cotangents of the saved gates (and r * h, h @ U + b_U) are ignored: they are
  // internal outputs.
  auto s = stream();
  const bool lstm = p_.kind == RnnKind::Lstm;
  std::vector<mx::array> ins{primals[1], primals[2]};
  if (lstm) {
    ins.push_back(primals[3]);
  }
  ins.push_back(cotangents[0]);  // dhseq
  if (lstm) {
    ins.push_back(cotangents[1]);  // dcseq
  }
  for (const auto& o : outputs) {
    ins.push_back(o);
  }
  for (auto& a : ins) {
    a = mx::contiguous(mx::astype(a, mx::float32, s), false, s);
  }
  if (p_.masked) {
    ins.push_back(primals.back());
  }
  auto prim = std::make_shared<RnnScan>(s, p_, true);
  auto shapes = prim->output_shapes(ins);
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  auto grads = mx::array::make_arrays(std::move(shapes), dtypes, prim, ins);
  std::vector<mx::array> res;
  const int mask_at = p_.masked ? static_cast<int>(primals.size()) - 1 : -1;
  for (int arg : argnums) {
    // xp, wh, h0, then c0 or b_U: the gradients' order; the mask has none.
    res.push_back(arg == mask_at ? mx::zeros_like(primals[arg], s) : grads[arg]);
  }
  return res;
}

bool RnnScan::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const RnnScan*>(&other);
  return o != nullptr && o->p_ == p_ && o->backward_ == backward_;
}

std::vector<mx::array> rnn_scan(RnnKind kind, const mx::array& xp, const mx::array& wh,
                                const mx::array& h0, const std::optional<mx::array>& state,
                                const std::optional<mx::array>& mask,
                                mx::StreamOrDevice s) {
  if (!blas::available()) {
    fail("no cblas_sgemm in this process");
  }
  if (xp.ndim() != 3 || wh.ndim() != 2 || h0.ndim() != 2) {
    fail("xp (B, T, k*H), wh (H, k*H) and h0 (B, H)");
  }
  const int b = xp.shape(0), t = xp.shape(1), h = wh.shape(0), k = blocks(kind);
  if (wh.shape(1) != k * h || xp.shape(2) != k * h || h0.shape(0) != b || h0.shape(1) != h) {
    fail(std::string("shapes do not fit a ") + kind_name(kind) + " with " +
         std::to_string(k) + " gate blocks");
  }
  if (has_state(kind) != state.has_value()) {
    fail(kind == RnnKind::Lstm       ? "the lstm needs c0"
         : kind == RnnKind::GruAfter ? "the reset-after gru needs its recurrent bias"
                                     : "only the lstm and the reset-after gru take a state");
  }
  if (kind == RnnKind::Lstm && state->shape() != h0.shape()) {
    fail("c0 (B, H) for the lstm");
  }
  if (kind == RnnKind::GruAfter && (state->ndim() != 1 || state->shape(0) != k * h)) {
    fail("the recurrent bias (3*H,) for the reset-after gru");
  }
  if (mask && (mask->dtype() != mx::bool_ || mask->ndim() != 2 || mask->shape(0) != b ||
               mask->shape(1) != t)) {
    fail("a boolean mask (B, T)");
  }
  if (b < 1 || t < 1 || h < 1) {
    fail("empty batch, sequence or state (the MLX scan handles those)");
  }
  auto stream = mx::to_stream(s);
  std::vector<mx::array> ins{xp, wh, h0};
  if (state) {
    ins.push_back(*state);
  }
  for (auto& a : ins) {
    if (a.dtype() != mx::float32) {
      fail("float32 inputs only");
    }
    a = mx::contiguous(a, false, stream);
  }
  if (mask) {
    ins.push_back(mx::contiguous(*mask, false, stream));
  }
  auto prim = std::make_shared<RnnScan>(stream, RnnParams{kind, b, t, h, mask.has_value()},
                                        false);
  auto shapes = prim->output_shapes(ins);
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  return mx::array::make_arrays(std::move(shapes), dtypes, prim, ins);
}

}  // namespace mlxnote
