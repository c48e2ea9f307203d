// Antialiased bilinear resampling weights shared by the CPU and CUDA frame preparation.
//
// The rule is torch's `F.interpolate(mode="bilinear", antialias=True, align_corners=False)`
// (itself PIL's): output sample i of an axis resized from `in` to `out` is centred at
// scale * (i + 0.5) in input pixel units (scale = in / out). The triangle filter has support 1
// when enlarging and is widened to `scale` when shrinking, so every input pixel contributes
// (that is the antialiasing). Taps falling outside the input are dropped and the remaining
// weights renormalised, which is what makes the edges match torch exactly.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define VIDEOSEG_HD __host__ __device__ __forceinline__
#else
#define VIDEOSEG_HD inline
#endif

namespace videoseg {

// The span of input pixels one output sample reads, and the numbers to weight them.
struct AxisTaps {
  int64_t start;     // first input pixel (relative to the crop)
  int64_t count;     // number of input pixels read
  float center;      // sample centre in input pixel units
  float inv_scale;   // 1 / filter width: maps a pixel's distance to the triangle's argument
};

VIDEOSEG_HD float triangle(float x) {
  x = x < 0.f ? -x : x;
  return x < 1.f ? 1.f - x : 0.f;
}

VIDEOSEG_HD AxisTaps axis_taps(int64_t i, int64_t in_size, int64_t out_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  const float support = scale >= 1.f ? scale : 1.f;
  AxisTaps t;
  t.center = scale * (static_cast<float>(i) + 0.5f);
  t.inv_scale = scale >= 1.f ? 1.f / scale : 1.f;
  // Truncation (not floor) as torch does; the clamp at 0 makes the two agree for negatives.
  int64_t lo = static_cast<int64_t>(t.center - support + 0.5f);
  int64_t hi = static_cast<int64_t>(t.center + support + 0.5f);
  lo = lo < 0 ? 0 : lo;
  hi = hi > in_size ? in_size : hi;
  t.start = lo;
  t.count = hi - lo;
  return t;
}

// Unnormalised weight of input pixel `j` (relative to the crop) for the sample described by `t`.
VIDEOSEG_HD float tap_weight(const AxisTaps& t, int64_t j) {
  return triangle((static_cast<float>(j) - t.center + 0.5f) * t.inv_scale);
}

}  // namespace videoseg
