// libmlxnote_dnnl.so: mlxnote's convolutions on oneDNN (see dnnl_abi.h). Direct algorithm
// only (no Winograd: its rounding differs from the reference), float32, channels-last data
// and MLX's weight layout (O, *K, I/g) as oneDNN's o*i / go*i tags, reordered into the
// layouts the primitive prefers (layout_mode). Primitives are built once per (kind,
// layout, bias, shape) and cached.
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>
#include <unordered_map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

#include "dnnl_abi.h"

extern "C" void omp_set_num_threads(int);

namespace {

using dnnl::memory;
using tag = memory::format_tag;

std::vector<int64_t> key_of(int kind, int mode, const MlxnoteDnnlConv& p) {
  std::vector<int64_t> k = {kind, mode, p.bias, p.nd, p.n, p.c, p.o, p.groups};
  for (int j = 0; j < p.nd; ++j) {
    for (int64_t v : {p.l[j], p.k[j], p.out[j], p.s[j], p.d[j], p.lo[j], p.hi[j]}) {
      k.push_back(v);
    }
  }
  return k;
}

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// Every primitive and reorder takes its scratchpad from us (user mode), one buffer each,
// kept with it: oneDNN's library-managed scratchpad is thread-local, sized by the thread
// that created the primitive, so a primitive built on one thread and run on another (MLX
// evaluates on the thread that asks) wrote past its end (a segfault in a JIT conv kernel
// on an AVX2 CPU: tests/test_threads.py, conv1d_transpose).
dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

memory scratch_for(const memory::desc& d) {
  return d.get_size() > 0 ? memory(d, engine()) : memory();
}

// One argument of a cached primitive: the caller's layout (channels last, MLX's weight
// layout) and the one the primitive runs on (oneDNN's optimised kernels take blocked
// weights: with the caller's own layout it falls back to its reference loops), with a
// reorder and a buffer between them when they differ.
struct Arg {
  int id;
  memory::desc user, prim;
  bool input;
  memory buffer;
  dnnl::reorder move;
  memory scratch;  // the reorder's scratchpad (none when it needs none)
};

struct Entry {
  dnnl::primitive prim;
  Arg args[3];  // a, b, out
  memory::desc bias;  // the forward's (o,) bias when it has one, else zero
  memory scratch;  // the primitive's scratchpad
};

Arg arg(int id, const memory::desc& user, const memory::desc& prim, bool input) {
  Arg a{id, user, prim, input, {}, {}, {}};
  if (prim != user) {
    a.buffer = memory(prim, engine());
    memory other(user, engine(), nullptr);
    const auto pd = input ? dnnl::reorder::primitive_desc(other, a.buffer, user_scratchpad())
                          : dnnl::reorder::primitive_desc(a.buffer, other, user_scratchpad());
    a.move = dnnl::reorder(pd);
    a.scratch = scratch_for(pd.scratchpad_desc());
  }
  return a;
}

Entry entry(dnnl::primitive prim, const memory::desc& scratchpad, Arg a, Arg b, Arg out,
            const memory::desc& bias = {}) {
  return {std::move(prim), {a, b, out}, bias, scratch_for(scratchpad)};
}

// The layouts a primitive runs on: 0 the caller's (no reorders), 1 weights in oneDNN's
// choice of layout and data channels last (the default), 2 data in its choice too.
// MLXNOTE_DNNL_LAYOUT ('user', 'any', 'all', or three of them comma-separated: forward,
// input gradient, weight gradient) forces them, for measurement. Blocked data (2) lost at
// stride 1 once its reorders are counted (conv1d 16x1024 64->64 fwd+bwd 7.2 vs 5.4 ms with
// it for the weight gradient). For the strided weight gradient it won under load (11.9 vs
// 8.7 ms, 16x64x64x64 s2 64->64 3x3) and lost when quiet (4.2 vs 8.6).
int layout_mode(int kind) {
  const char* v = std::getenv("MLXNOTE_DNNL_LAYOUT");
  if (v == nullptr || *v == 0) {
    return 1;
  }
  std::string all(v), one = all;
  if (all.find(',') != std::string::npos) {
    size_t at = 0;
    for (int i = 0; i < kind && at != std::string::npos; ++i) {
      at = all.find(',', at);
      at = at == std::string::npos ? at : at + 1;
    }
    one = at == std::string::npos ? "" : all.substr(at, all.find(',', at) - at);
  }
  return one == "user" ? 0 : one == "all" ? 2 : 1;
}

Entry build(int kind, int mode, const MlxnoteDnnlConv& p) {
  const int nd = p.nd;
  memory::dims src = {p.n, p.c}, dst = {p.n, p.o}, wei;
  memory::dims strides, dil, lo, hi;
  if (p.groups > 1) {
    wei = {p.groups, p.o / p.groups, p.c / p.groups};
  } else {
    wei = {p.o, p.c};
  }
  for (int j = 0; j < nd; ++j) {
    src.push_back(p.l[j]);
    dst.push_back(p.out[j]);
    wei.push_back(p.k[j]);
    strides.push_back(p.s[j]);
    dil.push_back(p.d[j] - 1);
    lo.push_back(p.lo[j]);
    hi.push_back(p.hi[j]);
  }
  static const tag data_tags[] = {tag::nwc, tag::nhwc, tag::ndhwc};
  static const tag w_tags[] = {tag::owi, tag::ohwi, tag::odhwi};
  static const tag gw_tags[] = {tag::gowi, tag::gohwi, tag::godhwi};
  const auto dt = memory::data_type::f32;
  memory::desc src_u(src, dt, data_tags[nd - 1]), dst_u(dst, dt, data_tags[nd - 1]);
  memory::desc wei_u(wei, dt, p.groups > 1 ? gw_tags[nd - 1] : w_tags[nd - 1]);
  memory::desc src_d = mode == 2 ? memory::desc(src, dt, tag::any) : src_u;
  memory::desc dst_d = mode == 2 ? memory::desc(dst, dt, tag::any) : dst_u;
  memory::desc wei_d = mode >= 1 ? memory::desc(wei, dt, tag::any) : wei_u;
  auto& eng = engine();
  const auto alg = dnnl::algorithm::convolution_direct;
  const auto train = dnnl::prop_kind::forward_training;
  const auto attr = user_scratchpad();
  dnnl::convolution_forward::primitive_desc fwd(eng, train, alg, src_d, wei_d, dst_d,
                                                strides, dil, lo, hi, attr);
  if (kind == MLXNOTE_DNNL_FORWARD) {
    memory::desc bias;
    if (p.bias) {
      bias = memory::desc({p.o}, dt, tag::a);
      fwd = dnnl::convolution_forward::primitive_desc(eng, train, alg, src_d, wei_d, bias,
                                                      dst_d, strides, dil, lo, hi, attr);
    }
    return entry(dnnl::convolution_forward(fwd), fwd.scratchpad_desc(),
                 arg(DNNL_ARG_SRC, src_u, fwd.src_desc(), true),
                 arg(DNNL_ARG_WEIGHTS, wei_u, fwd.weights_desc(), true),
                 arg(DNNL_ARG_DST, dst_u, fwd.dst_desc(), false), bias);
  }
  if (kind == MLXNOTE_DNNL_BACKWARD_DATA) {
    dnnl::convolution_backward_data::primitive_desc bwd(eng, alg, src_d, wei_d, dst_d,
                                                        strides, dil, lo, hi, fwd, attr);
    return entry(dnnl::convolution_backward_data(bwd), bwd.scratchpad_desc(),
                 arg(DNNL_ARG_DIFF_DST, dst_u, bwd.diff_dst_desc(), true),
                 arg(DNNL_ARG_WEIGHTS, wei_u, bwd.weights_desc(), true),
                 arg(DNNL_ARG_DIFF_SRC, src_u, bwd.diff_src_desc(), false));
  }
  dnnl::convolution_backward_weights::primitive_desc bww(eng, alg, src_d, wei_d, dst_d,
                                                         strides, dil, lo, hi, fwd, attr);
  return entry(dnnl::convolution_backward_weights(bww), bww.scratchpad_desc(),
               arg(DNNL_ARG_SRC, src_u, bww.src_desc(), true),
               arg(DNNL_ARG_DIFF_DST, dst_u, bww.diff_dst_desc(), true),
               arg(DNNL_ARG_DIFF_WEIGHTS, wei_u, bww.diff_weights_desc(), false));
}

std::mutex mutex;
constexpr size_t kSmallReorder = size_t(1) << 20;  // bytes
std::map<std::vector<int64_t>, Entry> cache;

}  // namespace

extern "C" __attribute__((visibility("default"))) int mlxnote_dnnl_conv_run(
    int kind, const MlxnoteDnnlConv* p, const float* a, const float* b, const float* bias,
    float* out, int threads, char* err, int errlen) {
  try {
    // One lock for the cache and the run: each primitive has one scratchpad and one buffer
    // per reordered argument (MLX may evaluate on several streams).
    std::lock_guard<std::mutex> lock(mutex);
    const int mode = layout_mode(kind);
    int team = threads > 0 ? threads : 1;
    if (const char* t = std::getenv("MLXNOTE_DNNL_THREADS"); t != nullptr && std::atoi(t) > 0) {
      team = std::atoi(t);  // measurement only
    }
    // A primitive plans its work for the OpenMP count of the thread that creates it, and
    // this thread's count may have been left at 1 by a one-thread GEMM (mlxnote's per-tap
    // weight gradients, attention): a conv built then ran on one thread (measured: conv2d
    // 16x64x64 32->64 forward 13 -> 26 ms). So the team is set first and is part of the key.
    auto key = key_of(kind, mode, *p);
    key.push_back(team);
    omp_set_num_threads(team);
    auto it = cache.find(key);
    if (it == cache.end()) {
      it = cache.emplace(std::move(key), build(kind, mode, *p)).first;
    }
    Entry& e = it->second;
    auto& eng = engine();
    dnnl::stream s(eng);
    // Reorders of small tensors (the weights) on one thread: an OpenMP region waits for
    // its slowest thread, and on a busy machine that is a scheduler slice (measured: a
    // 64x64x3x3 reorder took 0.03 ms, or 4-9 ms in the median under load).
    auto reorder = [&](Arg& g, memory& from, memory& to) {
      omp_set_num_threads(g.user.get_size() < kSmallReorder ? 1 : team);
      std::unordered_map<int, memory> io = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
      if (g.scratch) {
        io[DNNL_ARG_SCRATCHPAD] = g.scratch;
      }
      g.move.execute(s, io);
    };
    float* ptrs[3] = {const_cast<float*>(a), const_cast<float*>(b), out};
    std::unordered_map<int, memory> run;
    for (int i = 0; i < 3; ++i) {
      Arg& g = e.args[i];
      memory user(g.user, eng, ptrs[i]);
      if (!g.buffer) {
        run[g.id] = user;
        continue;
      }
      run[g.id] = g.buffer;
      if (g.input) {
        reorder(g, user, g.buffer);
      }
    }
    if (p->bias && kind == MLXNOTE_DNNL_FORWARD) {
      run[DNNL_ARG_BIAS] = memory(e.bias, eng, const_cast<float*>(bias));
    }
    if (e.scratch) {
      run[DNNL_ARG_SCRATCHPAD] = e.scratch;
    }
    omp_set_num_threads(team);
    e.prim.execute(s, run);
    Arg& o = e.args[2];
    if (o.buffer) {
      memory user(o.user, eng, out);
      reorder(o, o.buffer, user);
    }
    s.wait();
    return 0;
  } catch (const std::exception& ex) {
    std::snprintf(err, errlen, "%s", ex.what());
    return 1;
  }
}

extern "C" __attribute__((visibility("default"))) const char* mlxnote_dnnl_version() {
  static std::string v = [] {
    const auto* ver = dnnl::version();
    return std::to_string(ver->major) + "." + std::to_string(ver->minor) + "." +
           std::to_string(ver->patch) + " (" + ver->hash + ")";
  }();
  return v.c_str();
}
