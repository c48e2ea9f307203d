// CUDA frame preparation: one thread per output pixel, all three channels.
//
// Each thread evaluates the separable antialiased filter of resample.h directly as a 2-D sum over
// its input footprint, converting NV12 to RGB per source pixel, and divides by the product of the
// two axes' weight sums (the same renormalisation the CPU path does per axis). Recomputing the
// footprint per pixel instead of a two-pass separable scheme needs no scratch memory and no second
// launch; frames are read once from L2/L1 by neighbouring threads, which is what bounds the cost
// at model input sizes.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "frame_prep_cuda.h"
#include "resample.h"

namespace videoseg {
namespace {

struct KernelArgs {
  FrameBatch frames;
  const int32_t* boxes;
  float* out;
  int64_t out_h, out_w;
  Normalize norm;
  YuvMatrix yuv;
};

__device__ __forceinline__ float clamp255(float v) { return fminf(fmaxf(v, 0.f), 255.f); }

__device__ __forceinline__ void load_pixel(const KernelArgs& a, const uint8_t* frame, int64_t y, int64_t x,
                                           float& r, float& g, float& b) {
  const FrameBatch& f = a.frames;
  if (f.format == PixelFormat::kRGB) {
    const uint8_t* p = frame + y * f.stride_row + x * f.stride_col;
    r = p[0];
    g = p[f.stride_chan];
    b = p[2 * f.stride_chan];
    return;
  }
  const int64_t cx = x & ~int64_t{1};
  const uint8_t* chroma = frame + (f.height + y / 2) * f.stride_row;
  const float yy = static_cast<float>(frame[y * f.stride_row + x * f.stride_col]) - 16.f;
  const float u = static_cast<float>(chroma[cx * f.stride_col]) - 128.f;
  const float v = static_cast<float>(chroma[(cx + 1) * f.stride_col]) - 128.f;
  const float* m = a.yuv.m;
  r = clamp255(m[0] * yy + m[1] * u + m[2] * v);
  g = clamp255(m[3] * yy + m[4] * u + m[5] * v);
  b = clamp255(m[6] * yy + m[7] * u + m[8] * v);
}

__global__ void prepare_frames_kernel(const KernelArgs a) {
  const int64_t ox = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t oy = blockIdx.y * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  const int64_t n = blockIdx.z;
  if (ox >= a.out_w || oy >= a.out_h) return;
  const int32_t* box = a.boxes + 4 * n;
  const int64_t x0 = box[0], y0 = box[1], crop_w = box[2] - box[0], crop_h = box[3] - box[1];
  const uint8_t* frame = a.frames.data + n * a.frames.stride_frame;

  const AxisTaps tx = axis_taps(ox, crop_w, a.out_w);
  const AxisTaps ty = axis_taps(oy, crop_h, a.out_h);
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
      load_pixel(a, frame, y0 + ty.start + j, x0 + tx.start + i, pr, pg, pb);
      rr += wx * pr;
      gg += wx * pg;
      bb += wx * pb;
    }
    r += wy * rr;
    g += wy * gg;
    b += wy * bb;
  }
  const float inv = 1.f / (wx_sum * wy_sum);
  const int64_t plane = a.out_h * a.out_w;
  float* dst = a.out + n * 3 * plane + oy * a.out_w + ox;
  dst[0] = r * inv * a.norm.scale[0] + a.norm.bias[0];
  dst[plane] = g * inv * a.norm.scale[1] + a.norm.bias[1];
  dst[2 * plane] = b * inv * a.norm.scale[2] + a.norm.bias[2];
}

}  // namespace

void prepare_frames_cuda(const FrameBatch& frames, const int32_t* device_boxes, const OutputSpec& out,
                         const Normalize& norm, const YuvMatrix& yuv, std::uintptr_t stream) {
  if (frames.num_frames == 0) return;
  if (frames.num_frames > 65535) {
    throw std::invalid_argument("prepare_frames_cuda: at most 65535 frames per call (grid z limit).");
  }
  KernelArgs a{frames, device_boxes, out.data, out.height, out.width, norm, yuv};
  // 32 x 8: a warp spans one output row segment, so its reads of a source row coalesce.
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((out.width + block.x - 1) / block.x),
                  static_cast<unsigned>((out.height + block.y - 1) / block.y),
                  static_cast<unsigned>(frames.num_frames));
  prepare_frames_kernel<<<grid, block, 0, reinterpret_cast<cudaStream_t>(stream)>>>(a);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("prepare_frames_cuda: kernel launch failed: ") + cudaGetErrorString(err));
  }
}

}  // namespace videoseg
