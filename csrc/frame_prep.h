// Fused frame preparation (colour conversion, crop, antialiased resize, normalisation), torch-free.
//
// Both the CPU implementation (frame_prep_cpu.cpp) and the CUDA one (frame_prep_cuda.cu) take the
// same plain description of a batch, so the Python bindings can hand over the memory of a torch
// tensor (host or device) without this library knowing about torch.
#pragma once

#include <cstdint>
#include <string>

namespace videoseg {

enum class PixelFormat : int32_t {
  kRGB = 0,   // (n, H, W, 3) uint8, any strides
  kNV12 = 1,  // (n, H*3/2, W) uint8: H luma rows, then H/2 rows of interleaved U, V; H, W even
};

// A batch of uint8 frames described by a base pointer and element strides (uint8 => bytes).
struct FrameBatch {
  const uint8_t* data = nullptr;
  PixelFormat format = PixelFormat::kRGB;
  int64_t num_frames = 0;
  int64_t height = 0;  // luma height for NV12
  int64_t width = 0;
  int64_t stride_frame = 0;
  int64_t stride_row = 0;
  int64_t stride_col = 0;
  int64_t stride_chan = 0;  // RGB only
};

// out[c] = v * scale[c] + bias[c] for v in [0, 255]: (v / 255 - mean) / std folded into one FMA.
struct Normalize {
  float scale[3];
  float bias[3];
};

// [R, G, B] = m (row-major 3x3) @ [Y - 16, U - 128, V - 128], then clamped to [0, 255].
struct YuvMatrix {
  float m[9];
};

// Output: (n, 3, out_h, out_w) float32, C-contiguous.
struct OutputSpec {
  float* data = nullptr;
  int64_t height = 0;
  int64_t width = 0;
};

// Boxes: (n, 4) int32 x0, y0, x1, y1, end exclusive, already clamped and non-empty.
// Returns an empty string when the request is consistent, else what is wrong with it. Both
// bindings call it (on host copies of the boxes) before any memory is read, so a bad box can
// never read out of bounds.
std::string check_request(const FrameBatch& frames, const int32_t* boxes, const OutputSpec& out);

// CPU implementation: `num_threads` worker threads (<= 1 runs on the calling thread).
void prepare_frames_cpu(const FrameBatch& frames, const int32_t* boxes, const OutputSpec& out,
                        const Normalize& norm, const YuvMatrix& yuv, int num_threads);

}  // namespace videoseg
