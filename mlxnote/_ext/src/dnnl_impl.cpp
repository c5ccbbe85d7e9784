// libmlxnote_dnnl.so: mlxnote's convolutions on oneDNN (see dnnl_abi.h). Direct algorithm
// only (no Winograd: its rounding differs from the reference), float32, channels-last data
// and MLX's weight layout (O, *K, I/g) as oneDNN's o*i / go*i tags, so nothing is
// reordered. Primitives are built once per (kind, shape) and cached.
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

std::vector<int64_t> key_of(int kind, const MlxnoteDnnlConv& p) {
  std::vector<int64_t> k = {kind, p.nd, p.n, p.c, p.o, p.groups};
  for (int j = 0; j < p.nd; ++j) {
    for (int64_t v : {p.l[j], p.k[j], p.out[j], p.s[j], p.d[j], p.lo[j], p.hi[j]}) {
      k.push_back(v);
    }
  }
  return k;
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
};

struct Entry {
  dnnl::primitive prim;
  Arg args[3];  // a, b, out
};

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

Arg arg(int id, const memory::desc& user, const memory::desc& prim, bool input) {
  Arg a{id, user, prim, input, {}, {}};
  if (prim != user) {
    a.buffer = memory(prim, engine());
    a.move = input ? dnnl::reorder(memory(user, engine(), nullptr), a.buffer)
                   : dnnl::reorder(a.buffer, memory(user, engine(), nullptr));
  }
  return a;
}

// MLXNOTE_DNNL_LAYOUT (measurement only): 'any' (default: weights in oneDNN's choice of
// layout, data channels last), 'all' (data too), 'user' (no reorders).
int layout_mode() {
  const char* v = std::getenv("MLXNOTE_DNNL_LAYOUT");
  if (v == nullptr || std::strcmp(v, "any") == 0) return 1;
  return std::strcmp(v, "all") == 0 ? 2 : 0;
}

Entry build(int kind, const MlxnoteDnnlConv& p) {
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
  const int mode = layout_mode();
  memory::desc src_d = mode == 2 ? memory::desc(src, dt, tag::any) : src_u;
  memory::desc dst_d = mode == 2 ? memory::desc(dst, dt, tag::any) : dst_u;
  memory::desc wei_d = mode >= 1 ? memory::desc(wei, dt, tag::any) : wei_u;
  auto& eng = engine();
  const auto alg = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc fwd(
      eng, dnnl::prop_kind::forward_training, alg, src_d, wei_d, dst_d, strides, dil, lo, hi);
  if (kind == MLXNOTE_DNNL_FORWARD) {
    return {dnnl::convolution_forward(fwd),
            {arg(DNNL_ARG_SRC, src_u, fwd.src_desc(), true),
             arg(DNNL_ARG_WEIGHTS, wei_u, fwd.weights_desc(), true),
             arg(DNNL_ARG_DST, dst_u, fwd.dst_desc(), false)}};
  }
  if (kind == MLXNOTE_DNNL_BACKWARD_DATA) {
    dnnl::convolution_backward_data::primitive_desc bwd(eng, alg, src_d, wei_d, dst_d,
                                                        strides, dil, lo, hi, fwd);
    return {dnnl::convolution_backward_data(bwd),
            {arg(DNNL_ARG_DIFF_DST, dst_u, bwd.diff_dst_desc(), true),
             arg(DNNL_ARG_WEIGHTS, wei_u, bwd.weights_desc(), true),
             arg(DNNL_ARG_DIFF_SRC, src_u, bwd.diff_src_desc(), false)}};
  }
  dnnl::convolution_backward_weights::primitive_desc bww(eng, alg, src_d, wei_d, dst_d,
                                                         strides, dil, lo, hi, fwd);
  return {dnnl::convolution_backward_weights(bww),
          {arg(DNNL_ARG_SRC, src_u, bww.src_desc(), true),
           arg(DNNL_ARG_DIFF_DST, dst_u, bww.diff_dst_desc(), true),
           arg(DNNL_ARG_DIFF_WEIGHTS, wei_u, bww.diff_weights_desc(), false)}};
}

std::mutex mutex;
std::map<std::vector<int64_t>, Entry> cache;

}  // namespace

extern "C" __attribute__((visibility("default"))) int mlxnote_dnnl_conv(
    int kind, const MlxnoteDnnlConv* p, const float* a, const float* b, float* out,
    int threads, char* err, int errlen) {
  try {
    // One lock for the cache and the run: the library-managed scratchpad of a primitive is
    // not meant for concurrent runs (MLX may evaluate on several streams).
    std::lock_guard<std::mutex> lock(mutex);
    auto key = key_of(kind, *p);
    auto it = cache.find(key);
    if (it == cache.end()) {
      it = cache.emplace(std::move(key), build(kind, *p)).first;
    }
    Entry& e = it->second;
    auto& eng = engine();
    omp_set_num_threads(threads > 0 ? threads : 1);
    dnnl::stream s(eng);
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
        g.move.execute(s, user, g.buffer);
      }
    }
    e.prim.execute(s, run);
    Arg& o = e.args[2];
    if (o.buffer) {
      memory user(o.user, eng, out);
      o.move.execute(s, o.buffer, user);
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
