// videoseg_o3._C: the CPU ops, bound without torch (arrays arrive through the buffer protocol, so
// a torch tensor's .numpy() view is read in place, strides and all).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <thread>

#include "array_views.h"
#include "frame_prep.h"
#include "frame_prep_pixel.h"
#include "memory_hints.h"

namespace py = pybind11;
using namespace videoseg;

namespace {

// One call's validated inputs: the frames described from the array's own shape and strides, the
// boxes and output checked against them. Shared by both bindings so they accept exactly the same calls.
struct PrepCall {
  FrameBatch frames;
  const int32_t* boxes;
  OutputSpec out;
  Normalize norm;
  YuvMatrix yuv;
};

PrepCall parse_call(const py::array& frames, const std::string& pixel_format, const py::array& boxes, py::array& out,
                    const std::array<float, 3>& scale, const std::array<float, 3>& bias,
                    const std::array<float, 9>& yuv_matrix) {
  if (!frames.dtype().is(py::dtype::of<uint8_t>())) {
    throw std::invalid_argument("Invalid frames dtype: expected uint8.");
  }
  std::vector<int64_t> shape(frames.shape(), frames.shape() + frames.ndim());
  std::vector<int64_t> strides(frames.strides(), frames.strides() + frames.ndim());  // bytes == elements for uint8
  PrepCall call;
  call.frames = describe_frames(parse_pixel_format(pixel_format), shape, strides);
  call.frames.data = static_cast<const uint8_t*>(frames.data());
  call.boxes = boxes_pointer(boxes, call.frames.num_frames);
  call.out = describe_output(out, call.frames.num_frames);
  throw_if_inconsistent(call.frames, call.boxes, call.out);
  call.norm = make_normalize(scale, bias);
  call.yuv = make_yuv(yuv_matrix);
  return call;
}

void prepare_frames_binding(const py::array& frames, const std::string& pixel_format, const py::array& boxes,
                            py::array& out, const std::array<float, 3>& scale, const std::array<float, 3>& bias,
                            const std::array<float, 9>& yuv_matrix, int num_threads) {
  const PrepCall c = parse_call(frames, pixel_format, boxes, out, scale, bias, yuv_matrix);
  if (num_threads <= 0) num_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  advise_huge_pages(c.out.data, static_cast<std::size_t>(c.frames.num_frames) * 3 * c.out.height * c.out.width * sizeof(float));
  // The arrays stay referenced by the caller for the whole call, so their memory outlives the
  // released GIL; other Python threads (e.g. a decoder) run meanwhile.
  py::gil_scoped_release release;
  prepare_frames_cpu(c.frames, c.boxes, c.out, c.norm, c.yuv, num_threads);
}

// The CUDA kernel's per-pixel arithmetic run on the host, single-threaded: lets machines without a
// GPU test what the CUDA tier computes. Not meant for speed.
void prepare_frames_pixelwise_binding(const py::array& frames, const std::string& pixel_format,
                                      const py::array& boxes, py::array& out, const std::array<float, 3>& scale,
                                      const std::array<float, 3>& bias, const std::array<float, 9>& yuv_matrix) {
  const PrepCall c = parse_call(frames, pixel_format, boxes, out, scale, bias, yuv_matrix);
  const FrameBatch& f = c.frames;
  const OutputSpec& o = c.out;
  py::gil_scoped_release release;
  const int64_t plane = o.height * o.width;
  for (int64_t n = 0; n < f.num_frames; ++n) {
    for (int64_t oy = 0; oy < o.height; ++oy) {
      for (int64_t ox = 0; ox < o.width; ++ox) {
        float rgb[3];
        prepare_pixel(f, c.boxes, n, oy, ox, o.height, o.width, c.norm, c.yuv, rgb);
        float* dst = o.data + n * 3 * plane + oy * o.width + ox;
        dst[0] = rgb[0];
        dst[plane] = rgb[1];
        dst[2 * plane] = rgb[2];
      }
    }
  }
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "videoseg_o3 compiled CPU ops (torch-free C++).";
  m.def("prepare_frames", &prepare_frames_binding, py::arg("frames").noconvert(), py::arg("pixel_format"),
        py::arg("boxes").noconvert(), py::arg("out").noconvert(), py::arg("scale"), py::arg("bias"),
        py::arg("yuv_matrix"), py::arg("num_threads") = 0,
        R"doc(Crop, resize (antialiased bilinear), convert and normalise a batch of frames into `out`.

frames: uint8 (n, H, W, 3) for "rgb" or (n, H*3/2, W) for "nv12", any strides (read in place).
boxes: int32 (n, 4) x0, y0, x1, y1, end exclusive, inside the frame, non-empty.
out: float32 (n, 3, h, w), C-contiguous, written in place: v * scale[c] + bias[c] for v in [0, 255].
yuv_matrix: row-major 3x3 applied to (Y-16, U-128, V-128) for NV12.
num_threads: worker threads (<= 0: all hardware threads). The GIL is released while working.)doc");
  m.def("prepare_frames_pixelwise", &prepare_frames_pixelwise_binding, py::arg("frames").noconvert(),
        py::arg("pixel_format"), py::arg("boxes").noconvert(), py::arg("out").noconvert(), py::arg("scale"),
        py::arg("bias"), py::arg("yuv_matrix"),
        "Same contract as prepare_frames, computed with the CUDA kernel's per-pixel arithmetic on the host "
        "(single-threaded; for testing that arithmetic where no GPU is present).");
  m.def("hardware_threads", []() { return std::thread::hardware_concurrency(); },
        "Number of hardware threads the C++ ops would use by default.");
}
