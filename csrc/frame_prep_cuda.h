// Launcher of the CUDA frame preparation; plain C++ so the pybind11 bindings compile with the host
// compiler and never see CUDA headers.
#pragma once

#include <cstdint>

#include "frame_prep.h"

namespace videoseg {

// Queues the kernel on `stream` (a cudaStream_t passed as an integer; 0 = legacy default stream).
// `frames.data`, `device_boxes` and `out.data` are device pointers. Throws std::runtime_error with
// the CUDA error text when the launch fails.
void prepare_frames_cuda(const FrameBatch& frames, const int32_t* device_boxes, const OutputSpec& out,
                         const Normalize& norm, const YuvMatrix& yuv, std::uintptr_t stream);

}  // namespace videoseg
