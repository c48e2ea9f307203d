// CPU frame preparation: separable antialiased resize with colour conversion and normalisation
// fused in, one pass over the crop's source rows per output row block.
//
// Work is split into (frame, block of output rows) tasks handed to std::thread workers through an
// atomic counter. A block first resamples horizontally every source row its output rows read
// (converting NV12 to RGB on the way), then vertically, writing planar normalised floats. Blocks of
// the same frame recompute a few shared source rows at their seams; that costs far less than a
// barrier between the two passes would when a batch has fewer frames than threads.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "frame_prep.h"
#include "resample.h"

namespace videoseg {
namespace {

// Normalised weights of one axis, max_taps per output sample (zero-padded).
struct AxisPlan {
  std::vector<int32_t> start;
  std::vector<int32_t> count;
  std::vector<float> weights;
  int64_t max_taps = 0;

  void build(int64_t in_size, int64_t out_size, int64_t first, int64_t last) {
    const int64_t n = last - first;
    start.resize(n);
    count.resize(n);
    max_taps = 0;
    for (int64_t i = 0; i < n; ++i) {
      const AxisTaps t = axis_taps(first + i, in_size, out_size);
      start[i] = static_cast<int32_t>(t.start);
      count[i] = static_cast<int32_t>(t.count);
      max_taps = std::max<int64_t>(max_taps, t.count);
    }
    weights.assign(n * max_taps, 0.f);
    for (int64_t i = 0; i < n; ++i) {
      const AxisTaps t = axis_taps(first + i, in_size, out_size);
      float* w = weights.data() + i * max_taps;
      float total = 0.f;
      for (int64_t k = 0; k < t.count; ++k) {
        w[k] = tap_weight(t, t.start + k);
        total += w[k];
      }
      if (total != 0.f) {
        for (int64_t k = 0; k < t.count; ++k) w[k] /= total;
      }
    }
  }
};

// Per-worker scratch, reused across tasks so a batch allocates once per thread.
struct Scratch {
  AxisPlan xplan, yplan;
  std::vector<float> row;   // one source row of the crop, RGB interleaved, [0, 255]
  std::vector<float> hbuf;  // horizontally resampled rows: (rows, out_w, 3)
  std::vector<float> acc;   // one output row, (out_w, 3)
};

inline float clamp255(float v) { return v < 0.f ? 0.f : (v > 255.f ? 255.f : v); }

// Source row `y` (frame coordinates), columns [x0, x0 + width), as RGB floats written into `dst`
// (room for width + 2 pixels). Returns where the row's first pixel landed.
const float* load_row(const FrameBatch& f, const uint8_t* frame, const YuvMatrix& yuv, int64_t y, int64_t x0,
              int64_t width, float* dst) {
  if (f.format == PixelFormat::kRGB) {
    const uint8_t* src = frame + y * f.stride_row + x0 * f.stride_col;
    if (f.stride_col == 3 && f.stride_chan == 1) {
      for (int64_t k = 0; k < 3 * width; ++k) dst[k] = static_cast<float>(src[k]);
    } else {
      for (int64_t x = 0; x < width; ++x) {
        const uint8_t* p = src + x * f.stride_col;
        dst[3 * x + 0] = p[0];
        dst[3 * x + 1] = p[f.stride_chan];
        dst[3 * x + 2] = p[2 * f.stride_chan];
      }
    }
    return dst;
  }
  const uint8_t* luma = frame + y * f.stride_row;
  const uint8_t* chroma = frame + (f.height + y / 2) * f.stride_row;
  const float* m = yuv.m;
  if (f.stride_col == 1) {
    // Decoder surfaces are dense along a row: convert whole 2-pixel chroma pairs from the even
    // column at or before x0 (dst has room for one extra pixel on each side; the caller reads
    // from dst + 3 * (x0 & 1)). Branch-free min/max clamps let the compiler vectorise the loop.
    const int64_t first = x0 & ~int64_t{1};
    const int64_t pairs = (x0 + width - first + 1) / 2;
    const uint8_t* yp = luma + first;
    const uint8_t* cp = chroma + first;
    // Local copies: dst is a float* too, so without them every store could alias the matrix.
    const float m0 = m[0], m1 = m[1], m2 = m[2], m3 = m[3], m4 = m[4], m5 = m[5], m6 = m[6], m7 = m[7], m8 = m[8];
    for (int64_t p = 0; p < pairs; ++p) {
      const float u = static_cast<float>(cp[2 * p]) - 128.f, v = static_cast<float>(cp[2 * p + 1]) - 128.f;
      const float cr = m1 * u + m2 * v, cg = m4 * u + m5 * v, cb = m7 * u + m8 * v;
      const float ya = static_cast<float>(yp[2 * p]) - 16.f, yb = static_cast<float>(yp[2 * p + 1]) - 16.f;
      float* d = dst + 6 * p;
      d[0] = std::min(std::max(m0 * ya + cr, 0.f), 255.f);
      d[1] = std::min(std::max(m3 * ya + cg, 0.f), 255.f);
      d[2] = std::min(std::max(m6 * ya + cb, 0.f), 255.f);
      d[3] = std::min(std::max(m0 * yb + cr, 0.f), 255.f);
      d[4] = std::min(std::max(m3 * yb + cg, 0.f), 255.f);
      d[5] = std::min(std::max(m6 * yb + cb, 0.f), 255.f);
    }
    return dst + 3 * (x0 - first);
  }
  for (int64_t x = 0; x < width; ++x) {
    const int64_t sx = x0 + x;
    const int64_t cx = sx & ~int64_t{1};  // U at the even column of the pair, V at the odd one
    const float yy = static_cast<float>(luma[sx * f.stride_col]) - 16.f;
    const float u = static_cast<float>(chroma[cx * f.stride_col]) - 128.f;
    const float v = static_cast<float>(chroma[(cx + 1) * f.stride_col]) - 128.f;
    dst[3 * x + 0] = clamp255(m[0] * yy + m[1] * u + m[2] * v);
    dst[3 * x + 1] = clamp255(m[3] * yy + m[4] * u + m[5] * v);
    dst[3 * x + 2] = clamp255(m[6] * yy + m[7] * u + m[8] * v);
  }
  return dst;
}

// Horizontal resampling of one RGB-interleaved float row into `ow` output pixels. Every output reads
// max_taps taps: weights past its own count are zero (AxisPlan pads them) and land on the row
// buffer's zeroed tail. With N a compile-time constant (N > 0) the inner loop unrolls fully and the
// three channel sums stay in registers, which is most of this op's time; N = 0 reads the tap
// count at run time (strong shrinking).
template <int N>
void resample_row(const float* row, const AxisPlan& plan, int64_t ow, float* dst) {
  const int64_t taps = N > 0 ? N : plan.max_taps;
  const float* weights = plan.weights.data();
  const int32_t* start = plan.start.data();
  for (int64_t ox = 0; ox < ow; ++ox) {
    const float* w = weights + ox * taps;
    const float* p = row + 3 * static_cast<int64_t>(start[ox]);
    float a0 = 0.f, a1 = 0.f, a2 = 0.f;
    for (int64_t k = 0; k < taps; ++k) {
      a0 += w[k] * p[3 * k + 0];
      a1 += w[k] * p[3 * k + 1];
      a2 += w[k] * p[3 * k + 2];
    }
    dst[3 * ox + 0] = a0;
    dst[3 * ox + 1] = a1;
    dst[3 * ox + 2] = a2;
  }
}

void resample_row_any(const float* row, const AxisPlan& plan, int64_t ow, float* dst) {
  switch (plan.max_taps) {
    case 1: return resample_row<1>(row, plan, ow, dst);
    case 2: return resample_row<2>(row, plan, ow, dst);
    case 3: return resample_row<3>(row, plan, ow, dst);
    case 4: return resample_row<4>(row, plan, ow, dst);
    case 5: return resample_row<5>(row, plan, ow, dst);
    case 6: return resample_row<6>(row, plan, ow, dst);
    case 7: return resample_row<7>(row, plan, ow, dst);
    case 8: return resample_row<8>(row, plan, ow, dst);
    default: return resample_row<0>(row, plan, ow, dst);
  }
}

void run_block(const FrameBatch& f, const int32_t* boxes, const OutputSpec& out, const Normalize& norm,
               const YuvMatrix& yuv, int64_t frame_index, int64_t oy_begin, int64_t oy_end, Scratch& s) {
  const int32_t* b = boxes + 4 * frame_index;
  const int64_t x0 = b[0], y0 = b[1], crop_w = b[2] - b[0], crop_h = b[3] - b[1];
  const int64_t ow = out.width, ow3 = 3 * out.width;
  const uint8_t* frame = f.data + frame_index * f.stride_frame;

  s.xplan.build(crop_w, ow, 0, ow);
  s.yplan.build(crop_h, out.height, oy_begin, oy_end);
  const int64_t nrows = oy_end - oy_begin;
  int64_t row_lo = s.yplan.start[0], row_hi = 0;
  for (int64_t r = 0; r < nrows; ++r) {
    row_lo = std::min<int64_t>(row_lo, s.yplan.start[r]);
    row_hi = std::max<int64_t>(row_hi, s.yplan.start[r] + s.yplan.count[r]);
  }

  // Horizontal pass over the source rows this block reads.
  // Room for two pixels of NV12 pair alignment plus max_taps zero pixels: the fixed-tap loops read
  // max_taps pixels from every start, the zero weights past `count` landing on this zeroed tail.
  s.row.assign(3 * (crop_w + 2 + s.xplan.max_taps), 0.f);
  s.hbuf.resize((row_hi - row_lo) * ow3);
  // Each source row is converted to floats once (load_row) and then read by several overlapping
  // taps; resampling straight from the uint8 bytes converts every pixel once per tap and measured
  // slower. The zeroed tail of s.row lets the unrolled loop run to the last output.
  for (int64_t r = row_lo; r < row_hi; ++r) {
    float* dst = s.hbuf.data() + (r - row_lo) * ow3;
    resample_row_any(load_row(f, frame, yuv, y0 + r, x0, crop_w, s.row.data()), s.xplan, ow, dst);
  }

  // Vertical pass, then normalisation into the planar output.
  s.acc.resize(ow3);
  const int64_t plane = out.height * out.width;
  float* out_frame = out.data + frame_index * 3 * plane;
  const int64_t yt = s.yplan.max_taps;
  for (int64_t r = 0; r < nrows; ++r) {
    float* acc = s.acc.data();
    std::fill(acc, acc + ow3, 0.f);
    const float* w = s.yplan.weights.data() + r * yt;
    for (int32_t k = 0; k < s.yplan.count[r]; ++k) {
      const float wk = w[k];
      const float* src = s.hbuf.data() + (s.yplan.start[r] + k - row_lo) * ow3;
      for (int64_t j = 0; j < ow3; ++j) acc[j] += wk * src[j];
    }
    const int64_t oy = oy_begin + r;
    for (int c = 0; c < 3; ++c) {
      float* dst = out_frame + c * plane + oy * ow;
      const float sc = norm.scale[c], bi = norm.bias[c];
      for (int64_t ox = 0; ox < ow; ++ox) dst[ox] = acc[3 * ox + c] * sc + bi;
    }
  }
}

}  // namespace

void prepare_frames_cpu(const FrameBatch& frames, const int32_t* boxes, const OutputSpec& out,
                        const Normalize& norm, const YuvMatrix& yuv, int num_threads) {
  const int64_t n = frames.num_frames;
  if (n == 0) return;
  const int64_t threads = std::max(1, num_threads);
  // About four tasks per thread keeps threads busy when frames outnumber them unevenly (3 frames,
  // 2 threads); a batch with fewer frames than that is split into row blocks instead.
  const int64_t target_tasks = threads == 1 ? 1 : 4 * threads;
  const int64_t blocks = std::min<int64_t>(out.height, std::max<int64_t>(1, (target_tasks + n - 1) / n));
  const int64_t num_tasks = n * blocks;

  auto run_task = [&](int64_t task, Scratch& s) {
    const int64_t frame = task / blocks, blk = task % blocks;
    const int64_t oy_begin = out.height * blk / blocks, oy_end = out.height * (blk + 1) / blocks;
    run_block(frames, boxes, out, norm, yuv, frame, oy_begin, oy_end, s);
  };

  const int64_t workers = std::min<int64_t>(threads, num_tasks);
  if (workers <= 1) {
    Scratch s;
    for (int64_t t = 0; t < num_tasks; ++t) run_task(t, s);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto worker = [&]() {
    try {
      Scratch s;
      for (int64_t t = next.fetch_add(1); t < num_tasks; t = next.fetch_add(1)) run_task(t, s);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next.store(num_tasks);  // stop the other workers early
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int64_t i = 0; i + 1 < workers; ++i) pool.emplace_back(worker);
  worker();  // the calling thread works too
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace videoseg
