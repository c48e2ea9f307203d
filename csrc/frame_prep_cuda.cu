// CUDA frame preparation: one thread per output pixel, all three channels.
//
// Each thread runs prepare_pixel (frame_prep_pixel.h): the separable antialiased filter of
// resample.h evaluated directly as a 2-D sum over the pixel's input footprint, with NV12 converted
// per source pixel. Recomputing the footprint per pixel instead of a two-pass separable scheme needs
// no scratch memory and a single launch; neighbouring threads read the same source pixels, which
// the caches serve, so at model input sizes the cost stays bounded by reading the crop once.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "frame_prep_cuda.h"
#include "frame_prep_pixel.h"

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

__global__ void prepare_frames_kernel(const KernelArgs a) {
  const int64_t ox = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t oy = blockIdx.y * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  const int64_t n = blockIdx.z;
  if (ox >= a.out_w || oy >= a.out_h) return;
  float rgb[3];
  prepare_pixel(a.frames, a.boxes, n, oy, ox, a.out_h, a.out_w, a.norm, a.yuv, rgb);
  const int64_t plane = a.out_h * a.out_w;
  float* dst = a.out + n * 3 * plane + oy * a.out_w + ox;
  dst[0] = rgb[0];
  dst[plane] = rgb[1];
  dst[2 * plane] = rgb[2];
}

}  // namespace

void prepare_frames_cuda(const FrameBatch& frames, const int32_t* device_boxes, const OutputSpec& out,
                         const Normalize& norm, const YuvMatrix& yuv, std::uintptr_t stream) {
  if (frames.num_frames == 0) return;
  if (frames.num_frames > 65535) {
    throw std::invalid_argument("prepare_frames_cuda: at most 65535 frames per call (grid z limit).");
  }
  const KernelArgs a{frames, device_boxes, out.data, out.height, out.width, norm, yuv};
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
