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
  return kind == RnnKind::Lstm ? 4 : kind == RnnKind::Gru ? 3 : 1;
}

const char* kind_name(RnnKind kind) {
  return kind == RnnKind::Lstm ? "lstm" : kind == RnnKind::Gru ? "gru" : "rnn";
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

// Pointers into (B, T, n) sequences and the (B, n) states before step 0.
struct Seq {
  float* p;
  int t, n;
  float* at(int b, int s) const {
    return p + (static_cast<int64_t>(b) * t + s) * n;
  }
};

struct State {
  const float* first;  // (B, H): the state before step 0
  Seq seq;             // (B, T, H): the states after each step
  // The state before step s (row b) and the leading dimension of that matrix.
  const float* prev(int b, int s) const {
    return s ? seq.at(b, s - 1) : first + static_cast<int64_t>(b) * seq.n;
  }
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

// ---- forward ---------------------------------------------------------------------------
// ins: xp, wh, h0 [, c0]; outs: hseq, then LSTM cseq, gates; GRU gates, rh.
void forward(const RnnParams& p, const std::vector<const float*>& in,
             const std::vector<float*>& out) {
  const int b = p.b, t = p.t, h = p.h, k = blocks(p.kind), kh = k * h;
  const float* xp = in[0];
  const float* wh = in[1];
  Seq hseq{out[0], t, h};
  State hs{in[2], hseq};
  if (p.kind == RnnKind::Rnn) {
    std::memcpy(hseq.p, xp, sizeof(float) * static_cast<size_t>(b) * t * h);
    for (int s = 0; s < t; ++s) {
      blas::sgemm(false, false, b, h, h, 1.0f, hs.prev_rows(s), hs.prev_ld(s), wh, h, 1.0f,
                  hseq.at(0, s), t * h);
      each_row(b, h, [&](int r) { kernels::rnn_forward(hseq.at(r, s), h); });
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
      });
    }
    return;
  }
  Seq gates{out[1], t, kh}, rh{out[2], t, h};
  std::memcpy(gates.p, xp, sizeof(float) * static_cast<size_t>(b) * t * kh);
  for (int s = 0; s < t; ++s) {
    blas::sgemm(false, false, b, 2 * h, h, 1.0f, hs.prev_rows(s), hs.prev_ld(s), wh, kh, 1.0f,
                gates.at(0, s), t * kh);
    each_row(b, 2 * h, [&](int r) { kernels::gru_gates(gates.at(r, s), hs.prev(r, s),
                                                       rh.at(r, s), h); });
    blas::sgemm(false, false, b, h, h, 1.0f, rh.at(0, s), t * h, wh + 2 * h, kh, 1.0f,
                gates.at(0, s) + 2 * h, t * kh);
    each_row(b, 2 * h, [&](int r) { kernels::gru_output(gates.at(r, s), hs.prev(r, s),
                                                        hseq.at(r, s), h); });
  }
}

// ---- backward --------------------------------------------------------------------------
// ins: RNN wh, h0, dhseq, hseq; GRU wh, h0, dhseq, hseq, gates, rh;
//      LSTM wh, h0, c0, dhseq, dcseq, hseq, cseq, gates.
// outs: dxp, dwh, dh0 [, dc0].
void backward(const RnnParams& p, const std::vector<const float*>& in,
              const std::vector<float*>& out) {
  const int b = p.b, t = p.t, h = p.h, k = blocks(p.kind), kh = k * h;
  const bool lstm = p.kind == RnnKind::Lstm, gru = p.kind == RnnKind::Gru;
  const float* wh = in[0];
  const float* h0 = in[1];
  const float* c0 = lstm ? in[2] : nullptr;
  const int base = lstm ? 3 : 2;
  auto cseq_in = [&](int i) { return Seq{const_cast<float*>(in[i]), t, h}; };
  const Seq dhseq = cseq_in(base);
  const Seq dcseq = lstm ? cseq_in(base + 1) : Seq{};
  const State hs{h0, cseq_in(lstm ? base + 2 : base + 1)};
  const State cs = lstm ? State{c0, cseq_in(base + 3)} : State{};
  const int gi = lstm ? base + 4 : base + 2;
  const Seq gates = p.kind == RnnKind::Rnn ? Seq{} : Seq{const_cast<float*>(in[gi]), t, kh};
  const Seq rh = gru ? cseq_in(gi + 1) : Seq{};

  Seq dxp{out[0], t, kh};
  float* dwh = out[1];
  float* dh = out[2];  // the running state gradient; dh0 at the end
  float* dc = lstm ? out[3] : nullptr;
  std::fill(dh, dh + static_cast<size_t>(b) * h, 0.0f);
  if (lstm) {
    std::fill(dc, dc + static_cast<size_t>(b) * h, 0.0f);
  }
  std::vector<float> dz, drh;
  if (gru) {
    dz.resize(static_cast<size_t>(b) * h);
    drh.resize(static_cast<size_t>(b) * h);
  }
  for (int s = t - 1; s >= 0; --s) {
    if (p.kind == RnnKind::Rnn) {
      each_row(b, h, [&](int r) {
        float* dhr = dh + static_cast<int64_t>(r) * h;
        kernels::add_into(dhr, dhseq.at(r, s), h);
        kernels::rnn_backward(hs.seq.at(r, s), dhr, dxp.at(r, s), h);
      });
      blas::sgemm(false, true, b, h, h, 1.0f, dxp.at(0, s), t * kh, wh, kh, 0.0f, dh, h);
    } else if (lstm) {
      each_row(b, kh, [&](int r) {
        float* dhr = dh + static_cast<int64_t>(r) * h;
        float* dcr = dc + static_cast<int64_t>(r) * h;
        kernels::add_into(dhr, dhseq.at(r, s), h);
        kernels::add_into(dcr, dcseq.at(r, s), h);
        kernels::lstm_backward(gates.at(r, s), cs.seq.at(r, s), cs.prev(r, s), dhr, dcr,
                               dxp.at(r, s), h);
      });
      blas::sgemm(false, true, b, h, kh, 1.0f, dxp.at(0, s), t * kh, wh, kh, 0.0f, dh, h);
    } else {
      each_row(b, h, [&](int r) {
        float* dhr = dh + static_cast<int64_t>(r) * h;
        kernels::add_into(dhr, dhseq.at(r, s), h);
        kernels::gru_backward_candidate(gates.at(r, s), hs.prev(r, s), dhr, dxp.at(r, s),
                                        dz.data() + static_cast<int64_t>(r) * h, h);
      });
      blas::sgemm(false, true, b, h, h, 1.0f, dxp.at(0, s) + 2 * h, t * kh, wh + 2 * h, kh,
                  0.0f, drh.data(), h);
      each_row(b, 2 * h, [&](int r) {
        const int64_t o = static_cast<int64_t>(r) * h;
        kernels::gru_backward_gates(gates.at(r, s), hs.prev(r, s), dz.data() + o,
                                    drh.data() + o, dxp.at(r, s), dh + o, h);
      });
      blas::sgemm(false, true, b, h, 2 * h, 1.0f, dxp.at(0, s), t * kh, wh, kh, 1.0f, dh, h);
    }
  }
  // The recurrent kernel's gradient: one product over every step (cuDNN's way), not a
  // running sum of per-step products.
  const auto hprev = previous_states(hs, b);
  const int rows = b * t;
  if (gru) {
    blas::sgemm(true, false, h, 2 * h, rows, 1.0f, hprev.data(), h, dxp.p, kh, 0.0f, dwh, kh);
    blas::sgemm(true, false, h, h, rows, 1.0f, rh.p, h, dxp.p + 2 * h, kh, 0.0f, dwh + 2 * h,
                kh);
  } else {
    blas::sgemm(true, false, h, kh, rows, 1.0f, hprev.data(), h, dxp.p, kh, 0.0f, dwh, kh);
  }
}

}  // namespace

void RnnScan::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  auto& encoder = mx::cpu::get_command_encoder(stream());
  std::vector<const float*> in;
  for (const auto& a : inputs) {
    if (a.dtype() != mx::float32 || !a.flags().row_contiguous) {
      fail("inputs must be row-contiguous float32 arrays");
    }
    encoder.set_input_array(a);
    in.push_back(a.data<float>());
  }
  std::vector<float*> out;
  for (auto& o : outputs) {
    o.set_data(mx::allocator::malloc(o.nbytes()));
    encoder.set_output_array(o);
    out.push_back(o.data<float>());
  }
  encoder.dispatch([p = p_, bwd = backward_, in = std::move(in), out = std::move(out)]() {
    if (bwd) {
      backward(p, in, out);
    } else {
      forward(p, in, out);
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
    }
    return s;
  }
  switch (p_.kind) {
    case RnnKind::Rnn:
      return {seq};
    case RnnKind::Gru:
      return {seq, gates, seq};
    default:
      return {seq, seq, gates};
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
  // The cotangents of the saved gates (and r * h) are ignored: they are internal outputs.
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
  auto prim = std::make_shared<RnnScan>(s, p_, true);
  auto shapes = prim->output_shapes(ins);
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  auto grads = mx::array::make_arrays(std::move(shapes), dtypes, prim, ins);
  std::vector<mx::array> res;
  for (int arg : argnums) {
    res.push_back(grads[arg]);  // xp, wh, h0, c0 in the primals' order
  }
  return res;
}

bool RnnScan::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const RnnScan*>(&other);
  return o != nullptr && o->p_ == p_ && o->backward_ == backward_;
}

std::vector<mx::array> rnn_scan(RnnKind kind, const mx::array& xp, const mx::array& wh,
                                const mx::array& h0, const mx::array& c0,
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
  if (kind == RnnKind::Lstm && (c0.ndim() != 2 || c0.shape(0) != b || c0.shape(1) != h)) {
    fail("c0 (B, H) for the lstm");
  }
  if (b < 1 || t < 1 || h < 1) {
    fail("empty batch, sequence or state (the MLX scan handles those)");
  }
  auto stream = mx::to_stream(s);
  std::vector<mx::array> ins{xp, wh, h0};
  if (kind == RnnKind::Lstm) {
    ins.push_back(c0);
  }
  for (auto& a : ins) {
    if (a.dtype() != mx::float32) {
      fail("float32 inputs only");
    }
    a = mx::contiguous(a, false, stream);
  }
  auto prim = std::make_shared<RnnScan>(stream, RnnParams{kind, b, t, h}, false);
  auto shapes = prim->output_shapes(ins);
  std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
  return mx::array::make_arrays(std::move(shapes), dtypes, prim, ins);
}

}  // namespace mlxnote
