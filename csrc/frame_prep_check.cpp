// Consistency checks shared by the CPU and CUDA bindings (host code only).
#include <string>

#include "frame_prep.h"

namespace videoseg {

std::string check_request(const FrameBatch& frames, const int32_t* boxes, const OutputSpec& out) {
  if (frames.format != PixelFormat::kRGB && frames.format != PixelFormat::kNV12) {
    return "unknown pixel format";
  }
  if (frames.num_frames < 0 || frames.height <= 0 || frames.width <= 0) {
    return "frames must have at least one pixel, got " + std::to_string(frames.height) + " x " +
           std::to_string(frames.width);
  }
  if (frames.format == PixelFormat::kNV12 && (frames.height % 2 != 0 || frames.width % 2 != 0)) {
    return "NV12 frames need an even height and width (4:2:0 chroma covers 2 x 2 blocks)";
  }
  if (frames.stride_frame < 0 || frames.stride_row < 0 || frames.stride_col < 0 || frames.stride_chan < 0) {
    return "negative strides are not supported";
  }
  if (out.height <= 0 || out.width <= 0) {
    return "output size must be positive, got " + std::to_string(out.height) + " x " + std::to_string(out.width);
  }
  for (int64_t i = 0; i < frames.num_frames; ++i) {
    const int32_t* b = boxes + 4 * i;
    if (b[0] < 0 || b[1] < 0 || b[2] > frames.width || b[3] > frames.height || b[2] <= b[0] || b[3] <= b[1]) {
      return "box at index " + std::to_string(i) + " (" + std::to_string(b[0]) + ", " + std::to_string(b[1]) +
             ", " + std::to_string(b[2]) + ", " + std::to_string(b[3]) +
             ") is empty or leaves the " + std::to_string(frames.width) + " x " + std::to_string(frames.height) +
             " frame";
    }
  }
  return {};
}

}  // namespace videoseg
