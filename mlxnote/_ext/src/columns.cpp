#include "columns.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"

#include "batchnorm_kernels.h"  // column_sums
#include "pool.h"

namespace mlxnote {

namespace {

constexpr int64_t kRowsPerChunk = 64;

// Rows of the last axis of an array in any layout: row r starts at data + offset(r) and its
// element k is k * stride apart.
struct StridedRows {
  const float* data;
  std::vector<int64_t> shape, strides;  // the leading axes
  int64_t cols, stride;
  bool dense;  // row-contiguous: row r at data + r * cols

  explicit StridedRows(const mx::array& a)
      : data(a.data<float>()), cols(a.ndim() ? a.shape(-1) : 1),
        stride(a.ndim() ? a.strides().back() : 1), dense(a.flags().row_contiguous) {
    for (int i = 0; i + 1 < static_cast<int>(a.ndim()); ++i) {
      shape.push_back(a.shape(i));
      strides.push_back(a.strides()[i]);
    }
  }

  const float* row(int64_t r) const {
    if (dense) {
      return data + r * cols;
    }
    int64_t off = 0;
    for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
      off += (r % shape[i]) * strides[i];
      r /= shape[i];
    }
    return data + off;
  }

  // Row r into `to` (cols floats).
  void copy(int64_t r, float* to) const {
    copy_strided(row(r), stride, cols, to);
  }
};

// out[j] = the sum of column j of n rows: sum(r0, r1, part, scratch) adds rows [r0, r1) into
// the zeroed float32 partial; partials of kRowsPerChunk rows are added in float64.
template <class Sum>
void totals(int64_t n, int64_t c, float* out, Sum sum) {
  auto& pool = ThreadPool::instance();
  std::vector<std::vector<double>> tot(pool.threads(), std::vector<double>(c, 0.0));
  pool.parallel_for((n + kRowsPerChunk - 1) / kRowsPerChunk, 1,
                    [&](int64_t b, int64_t e, int worker) {
    std::vector<float> part(c), row(c);
    for (int64_t k = b; k < e; ++k) {
      std::fill(part.begin(), part.end(), 0.0f);
      sum(k * kRowsPerChunk, std::min(n, (k + 1) * kRowsPerChunk), part.data(), row.data());
      for (int64_t j = 0; j < c; ++j) {
        tot[worker][j] += part[j];
      }
    }
  });
  for (int64_t j = 0; j < c; ++j) {
    double s = 0.0;
    for (const auto& t : tot) {
      s += t[j];
    }
    out[j] = static_cast<float>(s);
  }
}

void require(const mx::array& a) {
  if (a.dtype() != mx::float32) {
    throw std::invalid_argument("mlxnote columns: float32 input only");
  }
}

}  // namespace

void copy_strided(const float* from, int64_t stride, int64_t n, float* to) {
  if (stride == 1) {
    std::memcpy(to, from, sizeof(float) * n);
  } else if (stride == 0) {
    std::fill(to, to + n, *from);
  } else {
    for (int64_t k = 0; k < n; ++k) {
      to[k] = from[k * stride];
    }
  }
}

void column_totals(const float* x, int64_t rows, int64_t c, float* out) {
  totals(rows, c, out, [&](int64_t r0, int64_t r1, float* part, float*) {
    kernels::column_sums(x + r0 * c, part, static_cast<int>(r1 - r0),
                         static_cast<int>(c));
  });
}

void Columns::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& a = inputs[0];
  require(a);
  if (kind_ == ColumnsKind::Contiguous && a.flags().row_contiguous) {
    out.copy_shared_buffer(a);
    return;
  }
  out.set_data(mx::allocator::malloc(out.nbytes()));
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.set_input_array(a);
  encoder.set_output_array(out);
  encoder.dispatch([rows = StridedRows(a), po = out.data<float>(), kind = kind_,
                    size = static_cast<int64_t>(a.size())]() {
    const int64_t n = rows.cols > 0 ? size / rows.cols : 0;
    const int64_t c = rows.cols;
    auto& pool = ThreadPool::instance();
    if (kind == ColumnsKind::Contiguous) {
      pool.parallel_for(n, std::max<int64_t>(1, 4096 / std::max<int64_t>(c, 1)),
                        [&](int64_t b, int64_t e, int) {
                          for (int64_t r = b; r < e; ++r) {
                            rows.copy(r, po + r * c);
                          }
                        });
      return;
    }
    if (rows.dense) {
      column_totals(rows.data, n, c, po);
      return;
    }
    // rows gathered one at a time (a broadcast or transposed cotangent)
    totals(n, c, po, [&](int64_t r0, int64_t r1, float* part, float* row) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* g = rows.row(r);
        if (rows.stride != 1) {
          rows.copy(r, row);
          g = row;
        }
        kernels::column_sums(g, part, 1, static_cast<int>(c));
      }
    });
  });
}

void Columns::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::runtime_error("mlxnote columns: CPU only");
}

std::vector<mx::Shape> Columns::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& a = inputs[0];
  if (kind_ == ColumnsKind::Contiguous) {
    return {a.shape()};
  }
  return {{a.ndim() ? a.shape(-1) : 1}};
}

std::vector<mx::array> Columns::vjp(const std::vector<mx::array>& primals,
                                    const std::vector<mx::array>& cotangents,
                                    const std::vector<int>&, const std::vector<mx::array>&) {
  // Linear: the identity, or the cotangent broadcast over the summed axes.
  if (kind_ == ColumnsKind::Contiguous) {
    return {cotangents[0]};
  }
  return {mx::broadcast_to(cotangents[0], primals[0].shape(), stream())};
}

std::vector<mx::array> Columns::jvp(const std::vector<mx::array>&,
                                    const std::vector<mx::array>& tangents,
                                    const std::vector<int>&) {
  return {kind_ == ColumnsKind::Contiguous ? tangents[0] : column_sums(tangents[0], stream())};
}

std::pair<std::vector<mx::array>, std::vector<int>> Columns::vmap(
    const std::vector<mx::array>& inputs, const std::vector<int>& axes) {
  const auto& a = inputs[0];
  if (kind_ == ColumnsKind::Contiguous) {
    return {{contiguous_rows(a, stream())}, {axes[0]}};
  }
  if (axes[0] < 0) {
    return {{column_sums(a, stream())}, {-1}};
  }
  return vmap_entries(inputs, axes, stream(), [&](const std::vector<mx::array>& e) {
    return std::vector<mx::array>{column_sums(e[0], stream())};
  });
}

const char* Columns::name() const {
  return kind_ == ColumnsKind::Contiguous ? "MlxnoteContiguousRows" : "MlxnoteColumnSums";
}

bool Columns::is_equivalent(const mx::Primitive& other) const {
  const auto* o = dynamic_cast<const Columns*>(&other);
  return o != nullptr && o->kind_ == kind_;
}

namespace {

mx::array make(ColumnsKind kind, const mx::array& a, mx::StreamOrDevice s) {
  auto stream = mx::to_stream(s);
  std::vector<mx::array> ins = {mx::astype(a, mx::float32, stream)};
  auto prim = std::make_shared<Columns>(stream, ColumnsParams{}, kind);
  auto shape = prim->output_shapes(ins)[0];
  return mx::array(std::move(shape), mx::float32, std::move(prim), std::move(ins));
}

}  // namespace

mx::array contiguous_rows(const mx::array& a, mx::StreamOrDevice s) {
  return make(ColumnsKind::Contiguous, a, s);
}

mx::array column_sums(const mx::array& a, mx::StreamOrDevice s) {
  return make(ColumnsKind::Sums, a, s);
}

}  // namespace mlxnote
