// Turning numpy arrays (torch tensors' .numpy() views) into the torch-free descriptions of
// frame_prep.h, with the checks that keep a wrong array from being read or written out of bounds.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <stdexcept>
#include <string>

#include "frame_prep.h"

namespace videoseg {

namespace py = pybind11;

inline PixelFormat parse_pixel_format(const std::string& name) {
  if (name == "rgb") return PixelFormat::kRGB;
  if (name == "nv12") return PixelFormat::kNV12;
  throw std::invalid_argument("Invalid pixel_format (" + name + "). Supported values are rgb, nv12.");
}

// Frame geometry from a shape and element strides: RGB (n, H, W, 3), NV12 (n, H*3/2, W).
inline FrameBatch describe_frames(PixelFormat format, const std::vector<int64_t>& shape,
                                  const std::vector<int64_t>& strides) {
  FrameBatch f;
  f.format = format;
  if (format == PixelFormat::kRGB) {
    if (shape.size() != 4 || shape[3] != 3 || strides.size() != 4) {
      throw std::invalid_argument("Invalid frames shape: expected (n, H, W, 3) uint8 for pixel_format rgb.");
    }
    f.num_frames = shape[0];
    f.height = shape[1];
    f.width = shape[2];
    f.stride_chan = strides[3];
  } else {
    if (shape.size() != 3 || strides.size() != 3 || shape[1] % 3 != 0) {
      throw std::invalid_argument("Invalid frames shape: expected (n, H*3/2, W) uint8 for pixel_format nv12.");
    }
    f.num_frames = shape[0];
    f.height = shape[1] / 3 * 2;
    f.width = shape[2];
  }
  f.stride_frame = strides[0];
  f.stride_row = strides[1];
  f.stride_col = strides[2];
  return f;
}

inline OutputSpec describe_output(py::array& out, int64_t num_frames) {
  if (!out.dtype().is(py::dtype::of<float>()) || out.ndim() != 4 || out.shape(0) != num_frames ||
      out.shape(1) != 3 || !(out.flags() & py::array::c_style) || !out.writeable()) {
    throw std::invalid_argument("Invalid out: expected a writeable C-contiguous float32 array (n, 3, h, w).");
  }
  OutputSpec o;
  o.data = static_cast<float*>(out.mutable_data());
  o.height = out.shape(2);
  o.width = out.shape(3);
  return o;
}

inline const int32_t* boxes_pointer(const py::array& boxes, int64_t num_frames) {
  if (!boxes.dtype().is(py::dtype::of<int32_t>()) || boxes.ndim() != 2 || boxes.shape(0) != num_frames ||
      boxes.shape(1) != 4 || !(boxes.flags() & py::array::c_style)) {
    throw std::invalid_argument("Invalid boxes: expected a C-contiguous int32 array (n, 4) of x0, y0, x1, y1.");
  }
  return static_cast<const int32_t*>(boxes.data());
}

inline Normalize make_normalize(const std::array<float, 3>& scale, const std::array<float, 3>& bias) {
  Normalize n;
  for (int c = 0; c < 3; ++c) {
    n.scale[c] = scale[c];
    n.bias[c] = bias[c];
  }
  return n;
}

inline YuvMatrix make_yuv(const std::array<float, 9>& m) {
  YuvMatrix y;
  for (int i = 0; i < 9; ++i) y.m[i] = m[i];
  return y;
}

inline void throw_if_inconsistent(const FrameBatch& f, const int32_t* boxes, const OutputSpec& out) {
  const std::string problem = check_request(f, boxes, out);
  if (!problem.empty()) throw std::invalid_argument("Invalid frame preparation request: " + problem + ".");
}

}  // namespace videoseg
