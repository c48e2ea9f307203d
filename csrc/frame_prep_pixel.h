// The CUDA kernel's per-pixel arithmetic, as a host/device function.
//
// frame_prep_cuda.cu runs it once per output pixel on the GPU; bindings.cpp also compiles it for
// the host (`_C.prepare_frames_pixelwise`) so machines without a GPU test exactly this arithmetic
// against the torch reference. Only the launch geometry is left to GPU-only tests.
#pragma once

#include <cstdint>

#include "frame_prep.h"
#include "resample.h"

namespace videoseg {

VIDEOSEG_HD float clamp_level(float v) { return v < 0.f ? 0.f : (v > 255.f ? 255.f : v); }

// RGB in [0, 255] of source pixel (y, x) in frame coordinates.
VIDEOSEG_HD void load_pixel(const FrameBatch& f, const YuvMatrix& yuv, const uint8_t* frame, int64_t y, int64_t x,
                            float& r, float& g, float& b) {
  if (f.format == PixelFormat::kRGB) {
    const uint8_t* p = frame + y * f.stride_row + x * f.stride_col;
    r = p[0];
    g = p[f.stride_chan];
    b = p[2 * f.stride_chan];
    return;
  }
  const int64_t cx = x & ~int64_t{1};  // U at the even column of the pair, V at the odd one
  const uint8_t* chroma = frame + (f.height + y / 2) * f.stride_row;
  const float yy = static_cast<float>(frame[y * f.stride_row + x * f.stride_col]) - 16.f;
  const float u = static_cast<float>(chroma[cx * f.stride_col]) - 128.f;
  const float v = static_cast<float>(chroma[(cx + 1) * f.stride_col]) - 128.f;
  const float* m = yuv.m;
  r = clamp_level(m[0] * yy + m[1] * u + m[2] * v);
  g = clamp_level(m[3] * yy + m[4] * u + m[5] * v);
  b = clamp_level(m[6] * yy + m[7] * u + m[8] * v);
}

// Output pixel (oy, ox) of frame `n`: the antialiased filter evaluated as one 2-D sum over the
// input footprint, divided by the product of the two axes' weight sums (the renormalisation the
// separable CPU path does per axis), then normalised. Writes the 3 channel values to `rgb_out`.
VIDEOSEG_HD void prepare_pixel(const FrameBatch& f, const int32_t* boxes, int64_t n, int64_t oy, int64_t ox,
                               int64_t out_h, int64_t out_w, const Normalize& norm, const YuvMatrix& yuv,
                               float* rgb_out) {
  const int32_t* box = boxes + 4 * n;
  const int64_t x0 = box[0], y0 = box[1], crop_w = box[2] - box[0], crop_h = box[3] - box[1];
  const uint8_t* frame = f.data + n * f.stride_frame;
  const AxisTaps tx = axis_taps(ox, crop_w, out_w);
  const AxisTaps ty = axis_taps(oy, crop_h, out_h);
  float wx_sum = 0.f;
  for (int64_t i = 0; i < tx.count; ++i) wx_sum += tap_weight(tx, tx.start + i);
  float r = 0.f, g = 0.f, b = 0.f, wy_sum = 0.f;
  for (int64_t j = 0; j < ty.count; ++j) {
    const float wy = tap_weight(ty, ty.start + j);
    wy_sum += wy;
    float rr = 0.f, gg = 0.f, bb = 0.f;
    for (int64_t i = 0; i < tx.count; ++i) {
      const float wx = tap_weight(tx, tx.start + i);
      float pr, pg, pb;
      load_pixel(f, yuv, frame, y0 + ty.start + j, x0 + tx.start + i, pr, pg, pb);
      rr += wx * pr;
      gg += wx * pg;
      bb += wx * pb;
    }
    r += wy * rr;
    g += wy * gg;
    b += wy * bb;
  }
  const float inv = 1.f / (wx_sum * wy_sum);
  rgb_out[0] = r * inv * norm.scale[0] + norm.bias[0];
  rgb_out[1] = g * inv * norm.scale[1] + norm.bias[1];
  rgb_out[2] = b * inv * norm.scale[2] + norm.bias[2];
}

}  // namespace videoseg
